#include "kvindex/bench/trace.h"

#include <algorithm>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/block_hash.h"
#include "common/check.h"
#include "nlohmann/json.hpp"

namespace kvc::kvindex::bench {
namespace {

uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace

absl::StatusOr<std::vector<TraceRequest>> LoadMooncakeTrace(const std::string& path,
                                                            size_t max_requests) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open trace ", path));
  std::vector<TraceRequest> requests;
  std::string line;
  size_t line_number = 0;
  while (std::getline(in, line) && (max_requests == 0 || requests.size() < max_requests)) {
    ++line_number;
    if (line.empty()) continue;
    const nlohmann::json record = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (record.is_discarded() || !record.contains("hash_ids") || !record.contains("input_length")) {
      return absl::InvalidArgumentError(absl::StrCat(path, ":", line_number, ": bad record"));
    }
    TraceRequest request;
    request.timestamp_ms = record.value("timestamp", int64_t{0});
    request.input_tokens = record["input_length"].get<uint32_t>();
    request.hash_ids = record["hash_ids"].get<std::vector<uint64_t>>();
    request.output_tokens = record.value("output_length", uint32_t{0});
    requests.push_back(std::move(request));
  }
  return requests;
}

void HashIdTokens(uint64_t hash_id, uint32_t vocab_size, std::span<uint32_t> out) {
  KVC_CHECK(vocab_size > 0 && out.size() == kTraceTokensPerHashId, "bad HashIdTokens call");
  uint64_t state = SplitMix64(hash_id);
  for (uint32_t& token : out) {
    state = SplitMix64(state);
    token = static_cast<uint32_t>(state % vocab_size);
  }
}

std::vector<uint32_t> RequestTokens(const TraceRequest& request, uint32_t vocab_size) {
  const size_t length =
      std::min<size_t>(request.input_tokens, request.hash_ids.size() * kTraceTokensPerHashId);
  std::vector<uint32_t> tokens(request.hash_ids.size() * kTraceTokensPerHashId);
  for (size_t i = 0; i < request.hash_ids.size(); ++i) {
    HashIdTokens(request.hash_ids[i], vocab_size,
                 std::span(tokens).subspan(i * kTraceTokensPerHashId, kTraceTokensPerHashId));
  }
  tokens.resize(length);
  return tokens;
}

void ExpandRequest(const TraceRequest& request, uint32_t block_size,
                   std::vector<uint64_t>* seq_hashes, std::vector<uint64_t>* local_hashes) {
  seq_hashes->clear();
  local_hashes->clear();
  static const uint64_t salt = SaltHash("mooncake-conversation-trace", "", "", kDefaultHashSeed);
  const std::vector<uint32_t> tokens = RequestTokens(request, 128000);  // a Llama-3 vocabulary
  const BlockHashes hashes = HashBlocks(tokens, salt, {block_size, kDefaultHashSeed});
  *seq_hashes = hashes.seq;
  *local_hashes = hashes.local;
}

}  // namespace kvc::kvindex::bench
