#include "router/proxy_call.h"

#include <utility>

#include "common/grpc_status.h"

namespace kvc::router {

namespace pb = ::kvcluster::v1;

ProxyCall::ProxyCall(const Router* router, const pb::GenerateRequest& request)
    : RoutedGenerate(router) {
  absl::MutexLock lock(&mutex_);
  absl::StatusOr<RouteDecision> decision = router->Decide(request);
  if (!decision.ok()) {
    LockedFail(ToGrpcStatus(decision.status()));
    return;
  }
  LockedStart(request, std::move(*decision));
}

void ProxyCall::LockedOnUpstreamProgress() { LockedWriteNext(); }

void ProxyCall::LockedWriteNext() {
  if (writing_ || finish_called_) return;
  if (LockedTake(&writing_message_)) {
    writing_ = true;
    if (writing_message_.has_result() && LockedQueued() == 0) {
      // A Generate stream ends with its result: send it with the status in one go.
      finish_called_ = true;
      StartWriteAndFinish(&writing_message_, grpc::WriteOptions(), grpc::Status::OK);
      return;
    }
    // No buffer hint even when more is queued: a hinted write may wait for the next write
    // to flush it, and the next one starts only from its OnWriteDone.
    StartWrite(&writing_message_);
    return;
  }
  if (LockedUpstreamDone()) {
    finish_called_ = true;
    Finish(LockedFinalStatus());
  }
}

void ProxyCall::OnWriteDone(bool ok) {
  absl::MutexLock lock(&mutex_);
  writing_ = false;
  if (!ok) {
    LockedCancelUpstream();
    if (!finish_called_) {
      finish_called_ = true;
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "the client went away"));
    }
    return;
  }
  LockedWriteNext();
}

void ProxyCall::OnCancel() {
  absl::MutexLock lock(&mutex_);
  LockedCancelUpstream();
}

void ProxyCall::OnDone() {
  {
    absl::MutexLock lock(&mutex_);
    LockedCancelUpstream();
  }
  Unref();
}

}  // namespace kvc::router
