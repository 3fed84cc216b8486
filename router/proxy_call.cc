#include "router/proxy_call.h"

#include <utility>

#include "common/grpc_status.h"

namespace kvc::router {

namespace pb = ::kvcluster::v1;

void ProxyCall::Listen(const Router* router, pb::Router::AsyncService* service,
                       grpc::ServerCompletionQueue* cq) {
  new ProxyCall(router, service, cq);
}

ProxyCall::ProxyCall(const Router* router, pb::Router::AsyncService* service,
                     grpc::ServerCompletionQueue* cq)
    : RoutedGenerate(router), service_(service), cq_(cq), loop_(router->pool()->loop()) {
  loop_->CallStarted();
  context_.AsyncNotifyWhenDone(&call_done_);
  service_->RequestGenerate(&context_, &request_, &writer_, cq_, cq_, &requested_);
}

ProxyCall::~ProxyCall() { loop_->CallEnded(); }

void ProxyCall::OnRequest(bool ok) {
  if (!ok) {  // the server is shutting down: no call came, and no end-of-call tag will
    finish_done_ = call_done_seen_ = true;
    MaybeRelease();
    return;
  }
  Listen(router(), service_, cq_);
  absl::MutexLock lock(&mutex_);
  absl::StatusOr<RouteDecision> decision = router()->Decide(request_);
  if (!decision.ok()) {
    LockedFail(ToGrpcStatus(decision.status()));
    return;
  }
  LockedStart(request_, std::move(*decision));
}

void ProxyCall::LockedOnUpstreamProgress() { LockedWriteNext(); }

void ProxyCall::LockedWriteNext() {
  if (writing_ || finish_called_) return;
  if (LockedTake(&writing_message_)) {
    if (writing_message_.has_result() && LockedQueued() == 0) {
      // A Generate stream ends with its result: send it with the status in one go, so that
      // the client reads the message and the end of the call from one packet.
      finish_called_ = true;
      writer_.WriteAndFinish(writing_message_, grpc::WriteOptions(), grpc::Status::OK, &finished_);
      return;
    }
    writing_ = true;
    writer_.Write(writing_message_, &written_);
    return;
  }
  if (LockedUpstreamDone()) LockedFinish(LockedFinalStatus());
}

void ProxyCall::LockedFinish(const grpc::Status& status) {
  if (finish_called_) return;
  finish_called_ = true;
  writer_.Finish(status, &finished_);
}

void ProxyCall::OnWriteDone(bool ok) {
  absl::MutexLock lock(&mutex_);
  writing_ = false;
  if (!ok) {
    LockedCancelUpstream();
    LockedFinish(grpc::Status(grpc::StatusCode::CANCELLED, "the client went away"));
    return;
  }
  LockedWriteNext();
}

void ProxyCall::OnFinishDone(bool) {
  finish_done_ = true;
  MaybeRelease();
}

void ProxyCall::OnCallDone(bool) {
  call_done_seen_ = true;
  if (context_.IsCancelled()) {
    absl::MutexLock lock(&mutex_);
    LockedCancelUpstream();
  }
  MaybeRelease();
}

void ProxyCall::MaybeRelease() {
  if (!finish_done_ || !call_done_seen_) return;
  {
    absl::MutexLock lock(&mutex_);
    LockedCancelUpstream();
  }
  Unref();
}

}  // namespace kvc::router
