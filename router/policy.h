// Routing policies: given what the prefix index says each worker holds and what each worker
// is doing, pick the worker for a request.
//
// kv (default): cost = overlap_weight * prefill_blocks + decode_load_blocks, where
//   prefill_blocks are the request's prompt blocks the worker would still compute and
//   decode_load_blocks are the tokens of its active requests, in blocks. Temperature 0 takes
//   the cheapest worker (ties: fewer active requests, then fewer cached blocks, then a
//   rotation, so that equal workers share the load); temperature > 0 samples
//   softmax(-cost / (temperature * mean cost)).
// round-robin, random, least-loaded (fewest active requests, then fewest tokens): baselines
//   that ignore the cache, for comparison.
//
// Thread-safety: Choose is const and thread-safe; the rotation counter is atomic.
#ifndef KVCLUSTER_ROUTER_POLICY_H_
#define KVCLUSTER_ROUTER_POLICY_H_

#include <atomic>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace kvc::router {

enum class PolicyKind { kKv, kRoundRobin, kRandom, kLeastLoaded };

absl::StatusOr<PolicyKind> ParsePolicy(std::string_view name);
const char* PolicyName(PolicyKind kind);

struct PolicyOptions {
  PolicyKind kind = PolicyKind::kKv;
  // Weight of a prompt block still to prefill against a block of decode load.
  double overlap_weight = 1.0;
  // 0: cheapest worker; > 0: softmax sampling, higher is more random.
  double temperature = 0.0;
};

// One eligible worker as the policy sees it.
struct Candidate {
  // Index into the caller's worker list.
  size_t worker = 0;
  // Leading prompt blocks the index says the worker holds.
  uint32_t matched_blocks = 0;
  int active_requests = 0;
  // Tokens of the worker's active requests (prompt + generated).
  int64_t active_tokens = 0;
  // Blocks the index holds for the worker: among otherwise equal workers, a new prefix goes
  // where the cache has the most room.
  uint64_t cached_blocks = 0;
};

struct Scored {
  size_t worker = 0;
  uint32_t matched_blocks = 0;
  uint32_t prefill_blocks = 0;
  double decode_load_blocks = 0;
  double cost = 0;
};

struct Decision {
  // Candidates in preference order: [0] is the choice, [1] the next best (for failover).
  std::vector<Scored> ranked;
};

class Policy {
 public:
  explicit Policy(const PolicyOptions& options) : options_(options) {}

  const PolicyOptions& options() const { return options_; }

  // REQUIRES: !candidates.empty(). `prompt_blocks` counts the request's full prompt blocks;
  // `block_size` converts token loads to blocks. `random` is a uniform draw in [0, 1) used
  // by the sampling policies.
  Decision Choose(std::span<const Candidate> candidates, uint32_t prompt_blocks,
                  uint32_t block_size, double random) const;

 private:
  const PolicyOptions options_;
  mutable std::atomic<uint64_t> rotation_{0};
};

}  // namespace kvc::router

#endif  // KVCLUSTER_ROUTER_POLICY_H_
