// The Mooncake conversation trace (../shared/data/mooncake/, see its README) turned into the
// block hashes a worker would report: each 512-token hash id becomes 32 blocks of 16 tokens
// whose token ids are derived from (hash id, block within it), chained with common/'s hashing
// from one salt, so requests with equal leading ids get equal leading seq hashes. Only the
// floor(input_length / 16) full blocks are kept.
//
// Thread safety: free functions with no shared state.
#ifndef KVCLUSTER_KVINDEX_BENCH_TRACE_H_
#define KVCLUSTER_KVINDEX_BENCH_TRACE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace kvc::kvindex::bench {

inline constexpr uint32_t kTraceTokensPerHashId = 512;

struct TraceRequest {
  int64_t timestamp_ms = 0;
  uint32_t input_tokens = 0;
  std::vector<uint64_t> hash_ids;
};

// Reads at most max_requests requests (0: all). NotFound when the file is absent.
absl::StatusOr<std::vector<TraceRequest>> LoadMooncakeTrace(const std::string& path,
                                                            size_t max_requests);

// Seq and local hashes of the request's full blocks of `block_size` tokens (a divisor of 512).
void ExpandRequest(const TraceRequest& request, uint32_t block_size,
                   std::vector<uint64_t>* seq_hashes, std::vector<uint64_t>* local_hashes);

}  // namespace kvc::kvindex::bench

#endif  // KVCLUSTER_KVINDEX_BENCH_TRACE_H_
