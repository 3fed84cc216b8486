#include "router/health_service.h"

#include <utility>

namespace kvc::router {

namespace health = ::grpc::health::v1;

// One Watch stream: writes the name's status now and again on every change, until the client
// goes away. Writes are started on the loop thread or by SetServingStatus, one at a time.
class HealthService::WatchCall {
 public:
  WatchCall(HealthService* owner) : owner_(owner) {
    owner_->loop_->CallStarted();
    context_.AsyncNotifyWhenDone(&call_done_);
    owner_->service_.RequestWatch(&context_, &request_, &writer_, owner_->cq_, owner_->cq_,
                                  &requested_);
  }

  // A status may have changed. REQUIRES: owner_->mutex_ held.
  void LockedUpdate(Status status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(owner_->mutex_) {
    if (writing_ || ended_ || status == written_) return;
    writing_ = true;
    written_ = status;
    response_.set_status(status);
    writer_.Write(response_, &written_tag_);
  }
  const std::string& name() const { return request_.service(); }

 private:
  void OnRequest(bool ok) {
    if (!ok) {  // shutting down: no call came, and no end-of-call tag will
      End();
      return;
    }
    owner_->ListenForWatch();
    absl::MutexLock lock(&owner_->mutex_);
    owner_->watchers_.insert(this);
    LockedUpdate(owner_->StatusOf(name()));
  }
  void OnWritten(bool ok) {
    absl::MutexLock lock(&owner_->mutex_);
    writing_ = false;
    if (!ok) ended_ = true;
    if (MaybeEnd()) return;
    LockedUpdate(owner_->StatusOf(name()));
  }
  void OnCallDone(bool) {
    absl::MutexLock lock(&owner_->mutex_);
    ended_ = true;
    call_done_seen_ = true;
    MaybeEnd();
  }
  // Deletes the call once the client left and no write is in flight; true if it did.
  bool MaybeEnd() ABSL_EXCLUSIVE_LOCKS_REQUIRED(owner_->mutex_) {
    if (!call_done_seen_ || writing_) return false;
    owner_->watchers_.erase(this);
    End();  // the caller's lock is on the owner's mutex, which outlives this call
    return true;
  }
  void End() {
    GrpcLoop* loop = owner_->loop_;
    delete this;
    loop->CallEnded();
  }

  HealthService* const owner_;
  grpc::ServerContext context_;
  health::HealthCheckRequest request_;
  health::HealthCheckResponse response_;
  grpc::ServerAsyncWriter<health::HealthCheckResponse> writer_{&context_};
  Status written_ = health::HealthCheckResponse::UNKNOWN;
  bool writing_ = false;
  bool ended_ = false;
  bool call_done_seen_ = false;
  GrpcLoop::MemberTag<WatchCall> requested_{this, &WatchCall::OnRequest};
  GrpcLoop::MemberTag<WatchCall> written_tag_{this, &WatchCall::OnWritten};
  GrpcLoop::MemberTag<WatchCall> call_done_{this, &WatchCall::OnCallDone};
};

HealthService::HealthService() { serving_[""] = true; }

HealthService::~HealthService() = default;

void HealthService::Serve(GrpcLoop* loop, grpc::ServerCompletionQueue* cq) {
  loop_ = loop;
  cq_ = cq;
  check_ = std::make_unique<UnaryMethod<health::HealthCheckRequest, health::HealthCheckResponse>>(
      loop,
      [this](grpc::ServerContext* context, health::HealthCheckRequest* request,
             grpc::ServerAsyncResponseWriter<health::HealthCheckResponse>* writer,
             void* tag) { service_.RequestCheck(context, request, writer, cq_, cq_, tag); },
      [this](const health::HealthCheckRequest& request, health::HealthCheckResponse* response) {
        absl::MutexLock lock(&mutex_);
        const Status status = StatusOf(request.service());
        if (status == health::HealthCheckResponse::SERVICE_UNKNOWN) {
          return grpc::Status(grpc::StatusCode::NOT_FOUND,
                              "unknown service '" + request.service() + "'");
        }
        response->set_status(status);
        return grpc::Status::OK;
      });
  check_->Serve();
  ListenForWatch();
}

void HealthService::ListenForWatch() { new WatchCall(this); }

HealthService::Status HealthService::StatusOf(const std::string& name) const {
  auto it = serving_.find(name);
  if (it == serving_.end()) return health::HealthCheckResponse::SERVICE_UNKNOWN;
  return it->second && !shut_down_ ? health::HealthCheckResponse::SERVING
                                   : health::HealthCheckResponse::NOT_SERVING;
}

void HealthService::SetServingStatus(const std::string& name, bool serving) {
  absl::MutexLock lock(&mutex_);
  serving_[name] = serving;
  for (WatchCall* watcher : watchers_) {
    if (watcher->name() == name) watcher->LockedUpdate(StatusOf(name));
  }
}

void HealthService::Shutdown() {
  absl::MutexLock lock(&mutex_);
  shut_down_ = true;
  for (WatchCall* watcher : watchers_) watcher->LockedUpdate(StatusOf(watcher->name()));
}

}  // namespace kvc::router
