// One proxied Generate: routes the request, streams it from the chosen worker to the client,
// retries once on the next-best worker when the first fails before sending any token, and
// otherwise passes the worker's error on (UNAVAILABLE, saying so, once tokens have streamed).
// Client cancellation cancels the worker's stream. Statistics are recorded on the worker's
// counters as the request starts, streams and ends.
//
// Lifetime and threads: gRPC calls the server side (this reactor) and the client side (one
// WorkerStream per attempt) on its threads; the object deletes itself once both sides are
// done. State below is guarded by mutex_.
#ifndef KVCLUSTER_ROUTER_PROXY_CALL_H_
#define KVCLUSTER_ROUTER_PROXY_CALL_H_

#include <grpcpp/grpcpp.h>

#include <deque>
#include <memory>

#include "absl/synchronization/mutex.h"
#include "kvcluster/v1/kvcluster.grpc.pb.h"
#include "router/router.h"

namespace kvc::router {

class ProxyCall final : public grpc::ServerWriteReactor<kvcluster::v1::GenerateResponse> {
 public:
  ProxyCall(const Router* router, const kvcluster::v1::GenerateRequest& request);

  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

 private:
  class WorkerStream;

  // The Locked* methods run with mutex_ held.
  void LockedStartAttempt();
  void LockedOnWorkerResponse(WorkerStream* stream, kvcluster::v1::GenerateResponse response);
  void LockedOnWorkerDone(WorkerStream* stream, const grpc::Status& status);
  // Takes the attempt's request and tokens off the worker's load (once), counting a failure.
  void LockedEndAttempt(bool failed);
  void LockedWriteNext();
  void LockedFinish(grpc::Status status);
  // Drops one reference; deletes the call when none is left. Call without the lock.
  void Unref();

  const Router* const router_;
  // The client's request; gRPC keeps it alive until OnDone.
  const kvcluster::v1::GenerateRequest& request_;
  absl::Mutex mutex_;
  RouteDecision decision_;
  size_t attempt_ = 0;
  WorkerStream* stream_ = nullptr;  // the current attempt
  int refs_ = 1;                    // the server side, plus one per live WorkerStream
  bool client_cancelled_ = false;
  uint32_t tokens_streamed_ = 0;
  int64_t tracked_tokens_ = 0;     // added to the worker's active_tokens by this attempt
  bool attempt_released_ = false;  // the attempt's load was already taken off the worker
  bool result_seen_ = false;       // the worker sent the result: the request succeeded
  uint32_t predicted_cached_ = 0;
  std::deque<kvcluster::v1::GenerateResponse> pending_;
  kvcluster::v1::GenerateResponse writing_message_;
  bool writing_ = false;
  bool upstream_done_ = false;
  bool finish_called_ = false;
  grpc::Status final_status_;
};

}  // namespace kvc::router

#endif  // KVCLUSTER_ROUTER_PROXY_CALL_H_
