#include "router/grpc_loop.h"

#include <cstdio>
#include <utility>

#include "common/check.h"

namespace kvc::router {

void GrpcLoop::WaitTag::Done(bool ok) {
  absl::MutexLock lock(&mutex_);
  ok_ = ok;
  done_ = true;
}

bool GrpcLoop::WaitTag::Wait() {
  absl::MutexLock lock(&mutex_);
  mutex_.Await(absl::Condition(&done_));
  done_ = false;
  return ok_;
}

GrpcLoop::GrpcLoop(std::unique_ptr<grpc::CompletionQueue> cq) : cq_(std::move(cq)) {
  thread_ = std::thread([this] { Run(); });
  helper_ = std::thread([this] { RunHelper(); });
}

GrpcLoop::~GrpcLoop() { Shutdown(); }

void GrpcLoop::Run() {
  void* tag = nullptr;
  bool ok = false;
  while (cq_->Next(&tag, &ok)) static_cast<Tag*>(tag)->Done(ok);
}

void GrpcLoop::RunHelper() {
  while (true) {
    std::function<void()> work;
    {
      absl::MutexLock lock(&mutex_);
      mutex_.Await(absl::Condition(
          +[](GrpcLoop* loop) ABSL_EXCLUSIVE_LOCKS_REQUIRED(loop->mutex_) {
            return loop->stopping_ || !loop->blocking_work_.empty();
          },
          this));
      if (blocking_work_.empty()) return;  // stopping, nothing left
      work = std::move(blocking_work_.front());
      blocking_work_.pop_front();
    }
    work();
  }
}

void GrpcLoop::RunBlocking(std::function<void()> work) {
  absl::MutexLock lock(&mutex_);
  KVC_CHECK(!stopping_, "RunBlocking after Shutdown");
  blocking_work_.push_back(std::move(work));
}

void GrpcLoop::CallStarted() {
  absl::MutexLock lock(&mutex_);
  ++calls_;
}

void GrpcLoop::CallEnded() {
  absl::MutexLock lock(&mutex_);
  KVC_CHECK(calls_ > 0, "CallEnded without CallStarted");
  --calls_;
}

void GrpcLoop::Shutdown(absl::Duration grace) {
  KVC_CHECK(!OnLoopThread(), "GrpcLoop::Shutdown on the loop thread");
  {
    absl::MutexLock lock(&mutex_);
    if (stopping_) return;
    auto no_calls = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) { return calls_ == 0; };
    if (!mutex_.AwaitWithTimeout(absl::Condition(&no_calls), grace)) {
      // Stopping the queue under a live call would break it: wait on, but say why.
      std::fprintf(stderr, "kvc-router: waiting for %d gRPC calls to end\n", calls_);
      mutex_.Await(absl::Condition(&no_calls));
    }
    stopping_ = true;
  }
  helper_.join();
  cq_->Shutdown();
  thread_.join();
}

}  // namespace kvc::router
