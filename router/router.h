// The routing decision shared by Route and Generate: tokenize (for text prompts), hash the
// prompt's full blocks exactly as the workers do, ask the index which worker holds how much
// of it, and let the policy weigh that against load.
//
// Thread-safety: thread-safe; Decide only reads the index and the pool's snapshots.
#ifndef KVCLUSTER_ROUTER_ROUTER_H_
#define KVCLUSTER_ROUTER_ROUTER_H_

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/tokenizer/tokenizer.h"
#include "kvcluster/v1/kvcluster.pb.h"
#include "kvindex/prefix_index.h"
#include "router/config.h"
#include "router/policy.h"
#include "router/worker_pool.h"

namespace kvc::router {

struct RoutedCandidate {
  WorkerLink* worker;  // kept alive by RouteDecision::workers
  Scored score;
};

struct RouteDecision {
  // The pool's worker list at decision time; it owns every candidate's link.
  std::shared_ptr<const WorkerList> workers;
  // Preference order; empty never (Decide fails with UNAVAILABLE instead).
  std::vector<RoutedCandidate> candidates;
  // The request to send to workers when it differs from the client's (a text prompt
  // tokenized here); absent when the client's request goes as it is.
  std::optional<kvcluster::v1::GenerateRequest> rewritten;
  uint32_t prompt_tokens = 0;
  uint32_t prompt_blocks = 0;
};

class Router {
 public:
  // `tokenizer` may be null: text prompts then pass through untokenized and are routed by
  // load alone. REQUIRES: index, pool and tokenizer outlive the router.
  Router(const RouterConfig& config, kvindex::PrefixIndex* index, WorkerPool* pool,
         const Tokenizer* tokenizer);

  // INVALID_ARGUMENT / RESOURCE_EXHAUSTED for a bad request, UNAVAILABLE when no worker is
  // ready.
  absl::StatusOr<RouteDecision> Decide(const kvcluster::v1::GenerateRequest& request) const;

  // Cached prompt tokens a worker holding `matched_blocks` leading blocks will report: it
  // always recomputes the block holding the last prompt token.
  uint32_t PredictedCachedTokens(uint32_t matched_blocks, uint32_t prompt_tokens) const;

  const RouterConfig& config() const { return config_; }
  const Policy& policy() const { return policy_; }
  kvindex::PrefixIndex* index() const { return index_; }
  WorkerPool* pool() const { return pool_; }
  absl::Time start_time() const { return start_time_; }

 private:
  const RouterConfig config_;
  kvindex::PrefixIndex* const index_;
  WorkerPool* const pool_;
  const Tokenizer* const tokenizer_;
  const Policy policy_;
  const absl::Time start_time_ = absl::Now();
};

}  // namespace kvc::router

#endif  // KVCLUSTER_ROUTER_ROUTER_H_
