#include "kvindex/bench/trace.h"

#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/block_hash.h"
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
    requests.push_back(std::move(request));
  }
  return requests;
}

void ExpandRequest(const TraceRequest& request, uint32_t block_size,
                   std::vector<uint64_t>* seq_hashes, std::vector<uint64_t>* local_hashes) {
  seq_hashes->clear();
  local_hashes->clear();
  const uint32_t blocks_per_id = kTraceTokensPerHashId / block_size;
  const size_t full_blocks =
      std::min<size_t>(request.input_tokens / block_size, request.hash_ids.size() * blocks_per_id);
  static const uint64_t salt = SaltHash("mooncake-conversation-trace", "", "", kDefaultHashSeed);
  std::vector<uint32_t> tokens(block_size);
  uint64_t parent = salt;
  for (size_t block = 0; block < full_blocks; ++block) {
    const uint64_t id = request.hash_ids[block / blocks_per_id];
    const uint64_t within = block % blocks_per_id;
    uint64_t state = SplitMix64(id * kTraceTokensPerHashId + within * block_size);
    for (uint32_t& token : tokens) {
      state = SplitMix64(state);
      token = static_cast<uint32_t>(state % 128000);  // a Llama-3-sized vocabulary
    }
    const uint64_t local = LocalBlockHash(tokens, kDefaultHashSeed);
    parent = ChainBlockHash(parent, local, kDefaultHashSeed);
    local_hashes->push_back(local);
    seq_hashes->push_back(parent);
  }
}

}  // namespace kvc::kvindex::bench
