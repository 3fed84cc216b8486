// The Mooncake conversation trace (../shared/data/mooncake/, see its README) turned into
// tokens and into the block hashes a worker would report: each hash id becomes 512 token ids
// derived from the id alone (HashIdTokens), a request's prompt is its ids' tokens concatenated
// and cut to input_length, and its full blocks are chained with common/'s hashing from one
// salt, so requests with equal leading ids get equal leading seq hashes. The kvindex replay
// and tools/kvbench share this one mapping.
//
// Thread safety: free functions with no shared state.
#ifndef KVCLUSTER_KVINDEX_BENCH_TRACE_H_
#define KVCLUSTER_KVINDEX_BENCH_TRACE_H_

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace kvc::kvindex::bench {

inline constexpr uint32_t kTraceTokensPerHashId = 512;

struct TraceRequest {
  int64_t timestamp_ms = 0;
  uint32_t input_tokens = 0;
  std::vector<uint64_t> hash_ids;
  // Tokens the request generated (the trace's output_length; 0 when the record has none).
  uint32_t output_tokens = 0;
};

// Reads at most max_requests requests (0: all). NotFound when the file is absent.
absl::StatusOr<std::vector<TraceRequest>> LoadMooncakeTrace(const std::string& path,
                                                            size_t max_requests);

// The 512 token ids that stand for `hash_id`, each below `vocab_size` (> 0), written to `out`
// (kTraceTokensPerHashId entries). Deterministic: the same id gives the same tokens.
void HashIdTokens(uint64_t hash_id, uint32_t vocab_size, std::span<uint32_t> out);

// The request's prompt: its hash ids' tokens concatenated and cut to input_tokens (the tokens
// of ids past the last are not invented: a record with too few ids gives a shorter prompt).
std::vector<uint32_t> RequestTokens(const TraceRequest& request, uint32_t vocab_size);

// Seq and local hashes of the request's full blocks of `block_size` tokens (a divisor of 512).
void ExpandRequest(const TraceRequest& request, uint32_t block_size,
                   std::vector<uint64_t>* seq_hashes, std::vector<uint64_t>* local_hashes);

}  // namespace kvc::kvindex::bench

#endif  // KVCLUSTER_KVINDEX_BENCH_TRACE_H_
