#include "router/proxy_call.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"

namespace kvc::router {

namespace pb = ::kvcluster::v1;

namespace {

// Failures worth another worker: the worker (or the way to it) broke, not the request.
bool Retryable(const grpc::Status& status) {
  switch (status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::UNKNOWN:
    case grpc::StatusCode::INTERNAL:
    case grpc::StatusCode::ABORTED:
    case grpc::StatusCode::CANCELLED:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return true;
    default:
      return false;
  }
}

}  // namespace

// The client side of one attempt. Holds a reference on the call until gRPC is done with it.
class ProxyCall::WorkerStream final : public grpc::ClientReadReactor<pb::GenerateResponse> {
 public:
  WorkerStream(ProxyCall* call, std::shared_ptr<WorkerLink> worker)
      : call_(call), worker_(std::move(worker)) {}

  void Start(const pb::GenerateRequest& request) {
    worker_->stub()->async()->Generate(&context_, &request, this);
    StartRead(&response_);
    StartCall();
  }
  void Cancel() { context_.TryCancel(); }
  void ReadMore() { StartRead(&response_); }
  WorkerLink* worker() const { return worker_.get(); }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // OnDone follows with the status
    absl::MutexLock lock(&call_->mutex_);
    call_->LockedOnWorkerResponse(this, std::move(response_));
  }
  void OnDone(const grpc::Status& status) override {
    {
      absl::MutexLock lock(&call_->mutex_);
      call_->LockedOnWorkerDone(this, status);
    }
    ProxyCall* call = call_;
    delete this;
    call->Unref();
  }

 private:
  ProxyCall* const call_;
  const std::shared_ptr<WorkerLink> worker_;
  grpc::ClientContext context_;
  pb::GenerateResponse response_;
};

ProxyCall::ProxyCall(const Router* router, const pb::GenerateRequest& request)
    : router_(router), request_(request) {
  absl::MutexLock lock(&mutex_);
  absl::StatusOr<RouteDecision> decision = router_->Decide(request);
  if (!decision.ok()) {
    LockedFinish(ToGrpcStatus(decision.status()));
    return;
  }
  decision_ = std::move(*decision);
  LockedStartAttempt();
}

void ProxyCall::LockedStartAttempt() {
  const RoutedCandidate& candidate = decision_.candidates[attempt_];
  WorkerCounters& counters = candidate.worker->counters();
  predicted_cached_ =
      router_->PredictedCachedTokens(candidate.score.matched_blocks, decision_.prompt_tokens);
  counters.requests.fetch_add(1, std::memory_order_relaxed);
  counters.prompt_tokens.fetch_add(decision_.prompt_tokens, std::memory_order_relaxed);
  counters.predicted_cached_tokens.fetch_add(predicted_cached_, std::memory_order_relaxed);
  counters.active_requests.fetch_add(1, std::memory_order_relaxed);
  tracked_tokens_ = decision_.prompt_tokens;
  attempt_released_ = false;
  counters.active_tokens.fetch_add(tracked_tokens_, std::memory_order_relaxed);
  stream_ = new WorkerStream(this, candidate.worker);
  ++refs_;
  stream_->Start(decision_.rewritten ? *decision_.rewritten : request_);
}

void ProxyCall::LockedEndAttempt(bool failed) {
  WorkerCounters& counters = stream_->worker()->counters();
  if (failed) counters.failed_requests.fetch_add(1, std::memory_order_relaxed);
  if (attempt_released_) return;
  attempt_released_ = true;
  counters.active_requests.fetch_sub(1, std::memory_order_relaxed);
  counters.active_tokens.fetch_sub(tracked_tokens_, std::memory_order_relaxed);
  tracked_tokens_ = 0;
}

void ProxyCall::LockedOnWorkerResponse(WorkerStream* stream, pb::GenerateResponse response) {
  if (stream != stream_ || finish_called_) return;
  WorkerCounters& counters = stream->worker()->counters();
  if (response.has_chunk()) {
    const int n = response.chunk().token_ids_size();
    tokens_streamed_ += n;
    tracked_tokens_ += n;
    counters.active_tokens.fetch_add(n, std::memory_order_relaxed);
  }
  if (response.has_result()) {
    result_seen_ = true;
    // The request is done on the worker: release its load now, before the client (who may
    // send its next request at once) sees the result, not when the stream's status arrives.
    LockedEndAttempt(/*failed=*/false);
    const uint32_t actual = response.result().usage().cached_prompt_tokens();
    counters.actual_cached_tokens.fetch_add(actual, std::memory_order_relaxed);
    counters.completed_requests.fetch_add(1, std::memory_order_relaxed);
    if (actual == predicted_cached_) {
      counters.accurate_predictions.fetch_add(1, std::memory_order_relaxed);
    }
  }
  pending_.push_back(std::move(response));
  LockedWriteNext();
  // Keep at most a few responses queued toward a slow client; reading resumes as writes drain.
  if (pending_.size() < 16) stream->ReadMore();
}

void ProxyCall::LockedOnWorkerDone(WorkerStream* stream, const grpc::Status& status) {
  if (stream != stream_) return;
  // Once the result arrived the request succeeded, whatever the stream's status (the router
  // may have cancelled the finished stream itself when the client left).
  const bool failed = !status.ok() && !result_seen_;
  LockedEndAttempt(failed);
  stream_ = nullptr;
  if (!failed) {
    upstream_done_ = true;
    LockedWriteNext();
    return;
  }
  if (client_cancelled_) {
    LockedFinish(grpc::Status(grpc::StatusCode::CANCELLED, "the client cancelled"));
    return;
  }
  const std::string worker = decision_.candidates[attempt_].worker->address();
  if (tokens_streamed_ == 0 && Retryable(status) && attempt_ == 0 &&
      decision_.candidates.size() > 1) {
    ++attempt_;
    LockedStartAttempt();
    return;
  }
  if (tokens_streamed_ > 0) {
    LockedFinish(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                              absl::StrCat("worker ", worker, " failed after streaming ",
                                           tokens_streamed_, " tokens: ", status.error_message())));
  } else if (Retryable(status)) {
    LockedFinish(grpc::Status(
        grpc::StatusCode::UNAVAILABLE,
        absl::StrCat("worker ", worker, " failed", attempt_ > 0 ? " (after a retry)" : "", ": ",
                     status.error_message())));
  } else {
    LockedFinish(status);  // the worker judged the request itself: pass its answer on
  }
}

void ProxyCall::LockedWriteNext() {
  if (writing_ || finish_called_) return;
  if (!pending_.empty()) {
    writing_message_ = std::move(pending_.front());
    pending_.pop_front();
    writing_ = true;
    if (writing_message_.has_result() && pending_.empty()) {
      // A Generate stream ends with its result: send it with the status in one go.
      finish_called_ = true;
      StartWriteAndFinish(&writing_message_, grpc::WriteOptions(), grpc::Status::OK);
      return;
    }
    // No buffer hint even when more is queued: a hinted write may wait for the next write
    // to flush it, and the next one starts only from its OnWriteDone.
    StartWrite(&writing_message_);
    if (stream_ != nullptr && pending_.size() == 15) stream_->ReadMore();
    return;
  }
  if (upstream_done_) LockedFinish(grpc::Status::OK);
}

void ProxyCall::LockedFinish(grpc::Status status) {
  final_status_ = std::move(status);
  upstream_done_ = true;
  pending_.clear();
  if (writing_ || finish_called_) return;  // OnWriteDone finishes
  finish_called_ = true;
  Finish(final_status_);
}

void ProxyCall::OnWriteDone(bool ok) {
  absl::MutexLock lock(&mutex_);
  writing_ = false;
  if (!ok) {
    client_cancelled_ = true;
    if (stream_ != nullptr) stream_->Cancel();
    if (!finish_called_) {
      finish_called_ = true;
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "the client went away"));
    }
    return;
  }
  if (!final_status_.ok() && pending_.empty() && !finish_called_) {
    finish_called_ = true;
    Finish(final_status_);
    return;
  }
  LockedWriteNext();
}

void ProxyCall::OnCancel() {
  absl::MutexLock lock(&mutex_);
  client_cancelled_ = true;
  if (stream_ != nullptr && !result_seen_) stream_->Cancel();
}

void ProxyCall::OnDone() {
  {
    absl::MutexLock lock(&mutex_);
    client_cancelled_ = true;
    if (stream_ != nullptr && !result_seen_) stream_->Cancel();
  }
  Unref();
}

void ProxyCall::Unref() {
  bool last = false;
  {
    absl::MutexLock lock(&mutex_);
    last = --refs_ == 0;
  }
  if (last) delete this;
}

}  // namespace kvc::router
