// RoutedGenerate: the worker side of one routed Generate request, shared by the gRPC proxy
// (ProxyCall) and the HTTP API (openai_api). Given the routing decision it streams the request
// from the chosen worker, retries once on the next-best worker when the first fails before
// sending any token, and otherwise ends with the worker's error (UNAVAILABLE, saying so, once
// tokens have streamed). Load and statistics are recorded on the worker's counters as the
// request starts, streams and ends, whichever client side drives it.
//
// The client side is a subclass: it takes the worker's messages in order with LockedTake
// (reading from the worker pauses while kMaxQueued messages wait, and resumes as they are
// taken), learns of new ones through LockedOnUpstreamProgress, and cancels with
// LockedCancelUpstream when its client goes away.
//
// Lifetime and threads: each attempt's WorkerStream runs on the router's GrpcLoop thread; the
// client side may run on any thread. The object deletes itself once the client side dropped its
// reference (Unref) and no worker stream is left. State below, the subclass's included, is guarded
// by mutex_.
#ifndef KVCLUSTER_ROUTER_ROUTED_GENERATE_H_
#define KVCLUSTER_ROUTER_ROUTED_GENERATE_H_

#include <grpcpp/grpcpp.h>

#include <cstddef>
#include <deque>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "kvcluster/v1/kvcluster.grpc.pb.h"
#include "router/router.h"

namespace kvc::router {

class RoutedGenerate {
 public:
  RoutedGenerate(const RoutedGenerate&) = delete;
  RoutedGenerate& operator=(const RoutedGenerate&) = delete;

  // Worker messages held for a slow client before reading from the worker pauses.
  static constexpr size_t kMaxQueued = 16;

 protected:
  explicit RoutedGenerate(const Router* router) : router_(router) {}
  virtual ~RoutedGenerate() = default;

  // Sends `request` to the decision's first candidate. REQUIRES: `request` stays valid until
  // LockedUpstreamDone(); called once.
  void LockedStart(const kvcluster::v1::GenerateRequest& request, RouteDecision decision)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);

  // Moves the oldest message not yet taken into *out; false when none waits.
  bool LockedTake(kvcluster::v1::GenerateResponse* out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  size_t LockedQueued() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) { return queue_.size(); }

  // True once no further message will be queued; LockedFinalStatus() then says how it ended:
  // OK after the worker's result, else the error for the client.
  bool LockedUpstreamDone() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) { return upstream_done_; }
  const grpc::Status& LockedFinalStatus() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    return final_status_;
  }
  // Ends the call without a worker (e.g. routing failed). Queued messages stay takeable.
  void LockedFail(grpc::Status status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);

  // The client went away: cancels the worker's stream unless its result already arrived.
  void LockedCancelUpstream() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);

  // Called with mutex_ held after a message was queued or the upstream ended.
  virtual void LockedOnUpstreamProgress() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) = 0;

  // Drops the client side's reference; the object is deleted once no worker stream is left
  // either. Call without the lock, at most once.
  void Unref() ABSL_LOCKS_EXCLUDED(mutex_);

  const Router* router() const { return router_; }

  absl::Mutex mutex_;

 private:
  class WorkerStream;

  void LockedStartAttempt() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  void LockedOnWorkerResponse(WorkerStream* stream, kvcluster::v1::GenerateResponse response)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  void LockedOnWorkerDone(WorkerStream* stream, const grpc::Status& status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // Takes the attempt's request and tokens off the worker's load (once), counting a failure.
  void LockedEndAttempt(bool failed) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  void LockedEnd(grpc::Status status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  void DropRef() ABSL_LOCKS_EXCLUDED(mutex_);

  const Router* const router_;
  const kvcluster::v1::GenerateRequest* request_ ABSL_GUARDED_BY(mutex_) = nullptr;
  RouteDecision decision_ ABSL_GUARDED_BY(mutex_);
  size_t attempt_ ABSL_GUARDED_BY(mutex_) = 0;
  WorkerStream* stream_ ABSL_GUARDED_BY(mutex_) = nullptr;  // the current attempt
  int refs_ ABSL_GUARDED_BY(mutex_) = 1;  // the client side, plus one per live WorkerStream
  bool client_cancelled_ ABSL_GUARDED_BY(mutex_) = false;
  uint32_t tokens_streamed_ ABSL_GUARDED_BY(mutex_) = 0;
  int64_t tracked_tokens_ ABSL_GUARDED_BY(mutex_) = 0;     // on the worker's active_tokens
  bool attempt_released_ ABSL_GUARDED_BY(mutex_) = false;  // its load was taken off already
  bool result_seen_ ABSL_GUARDED_BY(mutex_) = false;       // the worker sent the result: success
  bool read_paused_ ABSL_GUARDED_BY(mutex_) = false;       // kMaxQueued messages were waiting
  uint32_t predicted_cached_ ABSL_GUARDED_BY(mutex_) = 0;
  std::deque<kvcluster::v1::GenerateResponse> queue_ ABSL_GUARDED_BY(mutex_);
  bool upstream_done_ ABSL_GUARDED_BY(mutex_) = false;
  grpc::Status final_status_ ABSL_GUARDED_BY(mutex_);
};

}  // namespace kvc::router

#endif  // KVCLUSTER_ROUTER_ROUTED_GENERATE_H_
