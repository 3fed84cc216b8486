#include "tools/kvbench/workload.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/block_hash.h"
#include "kvindex/bench/trace.h"

namespace kvc::kvbench {
namespace {

// Token ids of a synthetic text: a seeded stream, so equal (seed, stream) pairs give equal
// tokens and different ones differ.
std::vector<uint32_t> SyntheticTokens(uint64_t seed, uint64_t stream, uint32_t count,
                                      uint32_t vocab_size) {
  std::mt19937_64 random(seed * 0x9e3779b97f4a7c15ULL ^ (stream + 1) * 0xbf58476d1ce4e5b9ULL);
  std::vector<uint32_t> tokens(count);
  for (uint32_t& token : tokens) token = static_cast<uint32_t>(random() % vocab_size);
  return tokens;
}

}  // namespace

absl::StatusOr<Workload> MooncakeWorkload(const TraceOptions& options) {
  if (options.vocab_size == 0) return absl::InvalidArgumentError("vocab_size must be > 0");
  if (!(options.speed > 0)) return absl::InvalidArgumentError("the replay speed must be > 0");
  if (options.start_s < 0 || options.window_s < 0) {
    return absl::InvalidArgumentError("the trace window must not be negative");
  }
  absl::StatusOr<std::vector<kvindex::bench::TraceRequest>> trace =
      kvindex::bench::LoadMooncakeTrace(options.path, 0);
  if (!trace.ok()) return trace.status();
  Workload workload;
  const int64_t start_ms = std::llround(options.start_s * 1000);
  const int64_t end_ms =
      options.window_s > 0 ? start_ms + std::llround(options.window_s * 1000) : INT64_MAX;
  int64_t first_ms = -1;
  for (size_t i = 0; i < trace->size(); ++i) {
    const kvindex::bench::TraceRequest& record = (*trace)[i];
    if (record.timestamp_ms < start_ms || record.timestamp_ms >= end_ms) continue;
    if (options.max_requests > 0 && workload.requests.size() >= options.max_requests) break;
    if (first_ms < 0) first_ms = record.timestamp_ms;
    if (record.timestamp_ms < first_ms) {
      return absl::InvalidArgumentError(
          absl::StrCat(options.path, ": record ", i, " goes back in time"));
    }
    BenchRequest request;
    request.arrival_s = (record.timestamp_ms - first_ms) / 1000.0 / options.speed;
    request.prompt = kvindex::bench::RequestTokens(record, options.vocab_size);
    if (request.prompt.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(options.path, ": record ", i, " is empty"));
    }
    request.max_tokens = std::max<uint32_t>(record.output_tokens, 1);
    if (options.max_output_tokens > 0) {
      request.max_tokens = std::min(request.max_tokens, options.max_output_tokens);
    }
    request.label = absl::StrCat("trace:", i);
    workload.requests.push_back(std::move(request));
  }
  if (workload.requests.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(options.path, ": no record in the chosen window"));
  }
  const double span_s = workload.requests.back().arrival_s;
  workload.description = absl::StrFormat(
      "%s: %d requests from t=%.0f s of the trace over %.0f s at %gx speed (%.1f s of replay)",
      options.path, workload.requests.size(), first_ms / 1000.0, span_s * options.speed,
      options.speed, span_s);
  return workload;
}

absl::StatusOr<Workload> SharedPrefixWorkload(const SharedPrefixOptions& options) {
  if (options.groups <= 0 || options.users_per_group <= 0 || options.turns <= 0) {
    return absl::InvalidArgumentError("groups, users per group and turns must be > 0");
  }
  if (options.vocab_size == 0) return absl::InvalidArgumentError("vocab_size must be > 0");
  if (options.system_tokens + options.question_tokens == 0) {
    return absl::InvalidArgumentError("a prompt needs system or question tokens");
  }
  if (options.output_tokens == 0) return absl::InvalidArgumentError("output_tokens must be > 0");
  if (options.rate < 0) return absl::InvalidArgumentError("the rate must not be negative");

  const int users = options.groups * options.users_per_group;
  std::vector<std::vector<uint32_t>> systems;
  for (int g = 0; g < options.groups; ++g) {
    systems.push_back(SyntheticTokens(options.seed, g, options.system_tokens, options.vocab_size));
  }
  std::vector<std::vector<uint32_t>> histories(users);
  std::mt19937_64 random(options.seed);
  std::exponential_distribution<double> gap(options.rate > 0 ? options.rate : 1.0);
  Workload workload;
  double clock_s = 0;
  std::vector<int> order(users);
  for (int turn = 0; turn < options.turns; ++turn) {
    for (int u = 0; u < users; ++u) order[u] = u;
    std::shuffle(order.begin(), order.end(), random);
    for (int user : order) {
      const int group = user / options.users_per_group;
      const uint64_t stream = (uint64_t{1} << 32) + uint64_t(user) * options.turns + turn;
      const std::vector<uint32_t> question =
          SyntheticTokens(options.seed, stream, options.question_tokens, options.vocab_size);
      std::vector<uint32_t>& history = histories[user];
      history.insert(history.end(), question.begin(), question.end());
      BenchRequest request;
      request.prompt = systems[group];
      request.prompt.insert(request.prompt.end(), history.begin(), history.end());
      request.max_tokens = options.output_tokens;
      request.label = absl::StrCat(group, "/", user % options.users_per_group, "/", turn);
      if (options.rate > 0 && !workload.requests.empty()) clock_s += gap(random);
      request.arrival_s = clock_s;
      workload.requests.push_back(std::move(request));
    }
  }
  workload.description = absl::StrFormat(
      "shared prefix: %d groups x %d users x %d turns, %u-token system prompts, %u-token "
      "questions, %u output tokens, %s",
      options.groups, options.users_per_group, options.turns, options.system_tokens,
      options.question_tokens, options.output_tokens,
      options.rate > 0 ? absl::StrFormat("Poisson arrivals at %g/s", options.rate)
                       : std::string("no arrival times"));
  return workload;
}

IdealHits IdealHitRate(const Workload& workload, uint32_t block_size) {
  // The salt only has to be the same for every request; the cluster's own is irrelevant.
  const uint64_t salt = SaltHash("kvbench-ideal", "", "", kDefaultHashSeed);
  const HashConfig config{block_size, kDefaultHashSeed};
  absl::flat_hash_set<uint64_t> seen;
  IdealHits hits;
  std::vector<uint64_t> hashes;
  for (const BenchRequest& request : workload.requests) {
    hashes.clear();
    AppendSeqHashes(request.prompt, salt, config, &hashes);
    const size_t tokens = request.prompt.size();
    const size_t reusable = std::min(hashes.size(), (tokens > 0 ? tokens - 1 : 0) / block_size);
    size_t matched = 0;
    while (matched < reusable && seen.contains(hashes[matched])) ++matched;
    hits.prompt_tokens += tokens;
    hits.cached_tokens += matched * block_size;
    seen.insert(hashes.begin(), hashes.end());
  }
  return hits;
}

}  // namespace kvc::kvbench
