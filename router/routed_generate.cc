#include "router/routed_generate.h"

#include <utility>

#include "absl/strings/str_cat.h"

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

// The client side of one attempt, on the router's GrpcLoop. Holds a reference on the call
// until gRPC is done with it: the stream deletes itself once its status arrived and its start
// completed. Reads are chained by the call (ReadMore) under its mutex, one at a time.
class RoutedGenerate::WorkerStream final {
 public:
  WorkerStream(RoutedGenerate* call, std::shared_ptr<WorkerLink> worker, GrpcLoop* loop)
      : call_(call), worker_(std::move(worker)), loop_(loop) {
    loop_->CallStarted();
  }

  void Start(const pb::GenerateRequest& request) {
    reader_ = worker_->stub()->PrepareAsyncGenerate(&context_, request, loop_->cq());
    reader_->StartCall(&started_);
    ReadMore();
  }
  void Cancel() { context_.TryCancel(); }
  void ReadMore() { reader_->Read(&response_, &read_done_); }
  WorkerLink* worker() const { return worker_.get(); }

 private:
  void OnStarted(bool) {
    start_done_ = true;
    MaybeDelete();
  }
  void OnReadDone(bool ok) {
    if (!ok) {  // the stream ended: its status follows
      reader_->Finish(&status_, &finished_);
      return;
    }
    absl::MutexLock lock(&call_->mutex_);
    call_->LockedOnWorkerResponse(this, std::move(response_));
  }
  void OnFinished(bool) {
    {
      absl::MutexLock lock(&call_->mutex_);
      call_->LockedOnWorkerDone(this, status_);
    }
    finish_done_ = true;
    MaybeDelete();
  }
  // The start and the status complete on the loop thread, in either order.
  void MaybeDelete() {
    if (!start_done_ || !finish_done_) return;
    RoutedGenerate* call = call_;
    GrpcLoop* loop = loop_;
    delete this;
    call->Unref();
    loop->CallEnded();
  }

  RoutedGenerate* const call_;
  const std::shared_ptr<WorkerLink> worker_;
  GrpcLoop* const loop_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientAsyncReader<pb::GenerateResponse>> reader_;
  pb::GenerateResponse response_;
  grpc::Status status_;
  bool start_done_ = false;
  bool finish_done_ = false;
  GrpcLoop::MemberTag<WorkerStream> started_{this, &WorkerStream::OnStarted};
  GrpcLoop::MemberTag<WorkerStream> read_done_{this, &WorkerStream::OnReadDone};
  GrpcLoop::MemberTag<WorkerStream> finished_{this, &WorkerStream::OnFinished};
};

void RoutedGenerate::LockedStart(const pb::GenerateRequest& request, RouteDecision decision) {
  request_ = &request;
  decision_ = std::move(decision);
  LockedStartAttempt();
}

void RoutedGenerate::LockedStartAttempt() {
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
  stream_ = new WorkerStream(this, std::shared_ptr<WorkerLink>(decision_.workers, candidate.worker),
                             router_->pool()->loop());
  ++refs_;
  stream_->Start(decision_.rewritten ? *decision_.rewritten : *request_);
}

void RoutedGenerate::LockedEndAttempt(bool failed) {
  WorkerCounters& counters = stream_->worker()->counters();
  if (failed) counters.failed_requests.fetch_add(1, std::memory_order_relaxed);
  if (attempt_released_) return;
  attempt_released_ = true;
  counters.active_requests.fetch_sub(1, std::memory_order_relaxed);
  counters.active_tokens.fetch_sub(tracked_tokens_, std::memory_order_relaxed);
  tracked_tokens_ = 0;
}

void RoutedGenerate::LockedOnWorkerResponse(WorkerStream* stream, pb::GenerateResponse response) {
  if (stream != stream_ || upstream_done_) {
    stream->ReadMore();  // not this call's any more: drain to the stream's end
    return;
  }
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
  if (client_cancelled_) {
    stream->ReadMore();  // nobody takes it: drain to the stream's end
    return;
  }
  queue_.push_back(std::move(response));
  // Keep at most kMaxQueued responses toward a slow client; LockedTake resumes reading.
  if (queue_.size() < kMaxQueued) {
    stream->ReadMore();
  } else {
    read_paused_ = true;
  }
  LockedOnUpstreamProgress();
}

void RoutedGenerate::LockedOnWorkerDone(WorkerStream* stream, const grpc::Status& status) {
  if (stream != stream_) return;
  // Once the result arrived the request succeeded, whatever the stream's status (the router
  // may have cancelled the finished stream itself when the client left). A stream cancelled
  // because the client left did not fail on the worker either.
  const bool failed = !status.ok() && !result_seen_;
  LockedEndAttempt(failed && !client_cancelled_);
  stream_ = nullptr;
  read_paused_ = false;
  if (!failed) {
    LockedEnd(grpc::Status::OK);
    return;
  }
  if (client_cancelled_) {
    LockedEnd(grpc::Status(grpc::StatusCode::CANCELLED, "the client cancelled"));
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
    LockedEnd(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                           absl::StrCat("worker ", worker, " failed after streaming ",
                                        tokens_streamed_, " tokens: ", status.error_message())));
  } else if (Retryable(status)) {
    LockedEnd(grpc::Status(
        grpc::StatusCode::UNAVAILABLE,
        absl::StrCat("worker ", worker, " failed", attempt_ > 0 ? " (after a retry)" : "", ": ",
                     status.error_message())));
  } else {
    LockedEnd(status);  // the worker judged the request itself: pass its answer on
  }
}

bool RoutedGenerate::LockedTake(pb::GenerateResponse* out) {
  if (queue_.empty()) return false;
  *out = std::move(queue_.front());
  queue_.pop_front();
  if (read_paused_ && stream_ != nullptr) {
    read_paused_ = false;
    stream_->ReadMore();
  }
  return true;
}

void RoutedGenerate::LockedEnd(grpc::Status status) {
  if (upstream_done_) return;
  upstream_done_ = true;
  final_status_ = std::move(status);
  LockedOnUpstreamProgress();
}

void RoutedGenerate::LockedFail(grpc::Status status) { LockedEnd(std::move(status)); }

void RoutedGenerate::LockedCancelUpstream() {
  if (client_cancelled_) return;
  client_cancelled_ = true;
  queue_.clear();
  if (stream_ == nullptr) return;
  if (!result_seen_) stream_->Cancel();
  // Whatever the stream still holds ends it; nobody waits for it any more.
  if (read_paused_) {
    read_paused_ = false;
    stream_->ReadMore();
  }
}

void RoutedGenerate::Unref() {
  bool last = false;
  {
    absl::MutexLock lock(&mutex_);
    last = --refs_ == 0;
  }
  if (last) delete this;
}

}  // namespace kvc::router
