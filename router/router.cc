#include "router/router.h"

#include <algorithm>
#include <random>
#include <span>

#include "absl/strings/str_cat.h"
#include "common/block_hash.h"

namespace kvc::router {

namespace pb = ::kvcluster::v1;

Router::Router(const RouterConfig& config, kvindex::PrefixIndex* index, WorkerPool* pool,
               const Tokenizer* tokenizer)
    : config_(config), index_(index), pool_(pool), tokenizer_(tokenizer), policy_(config.policy) {}

uint32_t Router::PredictedCachedTokens(uint32_t matched_blocks, uint32_t prompt_tokens) const {
  if (prompt_tokens == 0) return 0;
  const uint32_t reusable = (prompt_tokens - 1) / config_.hash.block_size;
  return std::min(matched_blocks, reusable) * config_.hash.block_size;
}

absl::StatusOr<RouteDecision> Router::Decide(const pb::GenerateRequest& request) const {
  RouteDecision decision;
  std::vector<uint32_t> text_tokens;
  std::span<const uint32_t> tokens;
  switch (request.prompt_case()) {
    case pb::GenerateRequest::kTokenIds:
      tokens = std::span<const uint32_t>(request.token_ids().ids().data(),
                                         request.token_ids().ids().size());
      if (tokens.empty()) return absl::InvalidArgumentError("the prompt is empty");
      break;
    case pb::GenerateRequest::kText:
      if (static_cast<int64_t>(request.text().size()) > config_.max_prompt_bytes) {
        return absl::ResourceExhaustedError(
            absl::StrCat("the prompt text has ", request.text().size(), " bytes; the limit is ",
                         config_.max_prompt_bytes));
      }
      if (tokenizer_ != nullptr) {
        text_tokens = tokenizer_->Encode(request.text(), request.add_special_tokens());
        tokens = text_tokens;
        // Workers get exactly the tokens that were hashed.
        decision.rewritten = request;
        decision.rewritten->mutable_token_ids()->mutable_ids()->Assign(text_tokens.begin(),
                                                                       text_tokens.end());
        decision.rewritten->set_add_special_tokens(false);
      }
      break;
    case pb::GenerateRequest::PROMPT_NOT_SET:
      return absl::InvalidArgumentError("the request has no prompt: set token_ids or text");
  }
  if (request.sampling().max_tokens() <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_tokens must be positive, got ", request.sampling().max_tokens()));
  }
  decision.prompt_tokens = tokens.size();

  std::vector<uint64_t> hashes;
  const uint64_t salt = SaltHash(config_.model_identity, request.lora_name(), request.cache_salt(),
                                 config_.hash.seed);
  AppendSeqHashes(tokens, salt, config_.hash, &hashes);
  decision.prompt_blocks = hashes.size();

  decision.workers = pool_->Snapshot();
  std::vector<WorkerLink*> ready;
  ready.reserve(decision.workers->size());
  for (const std::shared_ptr<WorkerLink>& link : *decision.workers) {
    if (link->ready()) ready.push_back(link.get());
  }
  if (ready.empty()) return absl::UnavailableError("no worker is ready to serve");
  std::vector<kvindex::WorkerMatch> matches;
  index_->FindMatches(hashes, &matches);
  std::vector<Candidate> candidates;
  candidates.reserve(ready.size());
  for (size_t i = 0; i < ready.size(); ++i) {
    Candidate c;
    c.worker = i;
    auto match = std::lower_bound(
        matches.begin(), matches.end(), ready[i]->index_id(),
        [](const kvindex::WorkerMatch& m, kvindex::WorkerId id) { return m.worker < id; });
    if (match != matches.end() && match->worker == ready[i]->index_id()) {
      c.matched_blocks = match->matched_blocks;
    }
    const WorkerCounters& counters = ready[i]->counters();
    c.cached_blocks = counters.indexed_blocks.load(std::memory_order_relaxed);
    c.active_requests = counters.active_requests.load(std::memory_order_relaxed);
    // What this router has in flight there, plus what others do (from GetLoad).
    c.active_tokens = counters.active_tokens.load(std::memory_order_relaxed) +
                      counters.external_tokens_in_flight.load(std::memory_order_relaxed);
    candidates.push_back(c);
  }
  thread_local std::mt19937_64 rng{std::random_device{}()};
  const double random = std::uniform_real_distribution<double>(0, 1)(rng);
  const Decision chosen =
      policy_.Choose(candidates, decision.prompt_blocks, config_.hash.block_size, random);
  decision.candidates.reserve(chosen.ranked.size());
  for (const Scored& s : chosen.ranked) decision.candidates.push_back({ready[s.worker], s});
  return decision;
}

}  // namespace kvc::router
