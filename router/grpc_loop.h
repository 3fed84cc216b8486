// GrpcLoop: the router's one gRPC thread. Every gRPC operation of the router (the calls it
// serves and the calls it makes to workers) completes on one completion queue that this
// thread alone polls.
//
// Why one: gRPC's poller hands the polling role to another waiting thread after every wakeup,
// so each extra polling thread (a callback-API thread, a thread blocked in a synchronous
// Read) adds thread switches to every request. On a router sharing a few cores with its
// clients and workers those switches cost more than the proxying itself; with one poller a
// routed request needs no thread switch inside the router at all.
//
// Completion handlers (Tag::Done) run on the loop thread and must not block. Threads that do
// block (the worker links) start their operations with a WaitTag and wait for it; RunBlocking
// moves work that may block (e.g. stopping a worker link) off the loop.
//
// Shutdown: every call object registers with CallStarted / CallEnded; Shutdown waits until no
// call is left (after the server shut down and the worker links stopped), then drains the
// queue and joins the thread.
//
// Thread-safety: thread-safe; operations may be started from any thread.
#ifndef KVCLUSTER_ROUTER_GRPC_LOOP_H_
#define KVCLUSTER_ROUTER_GRPC_LOOP_H_

#include <grpcpp/grpcpp.h>

#include <deque>
#include <functional>
#include <memory>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace kvc::router {

class GrpcLoop {
 public:
  // What a completion queue operation was started with; Done runs on the loop thread.
  class Tag {
   public:
    virtual void Done(bool ok) = 0;

   protected:
    ~Tag() = default;
  };

  // A Tag that calls a member function of its owner.
  template <typename Owner>
  class MemberTag final : public Tag {
   public:
    MemberTag(Owner* owner, void (Owner::*method)(bool)) : owner_(owner), method_(method) {}
    void Done(bool ok) override { (owner_->*method_)(ok); }

   private:
    Owner* const owner_;
    void (Owner::*const method_)(bool);
  };

  // A Tag that another thread waits for: start one operation with it, then Wait. Reusable
  // for one operation after another. Never Wait on the loop thread.
  class WaitTag final : public Tag {
   public:
    void Done(bool ok) override;
    // Blocks until the operation completes; returns its ok.
    bool Wait();

   private:
    absl::Mutex mutex_;
    bool done_ ABSL_GUARDED_BY(mutex_) = false;
    bool ok_ ABSL_GUARDED_BY(mutex_) = false;
  };

  // Starts the thread polling `cq` (a server's queue when the loop also serves calls).
  explicit GrpcLoop(std::unique_ptr<grpc::CompletionQueue> cq);
  ~GrpcLoop();  // Shutdown()

  GrpcLoop(const GrpcLoop&) = delete;
  GrpcLoop& operator=(const GrpcLoop&) = delete;

  grpc::CompletionQueue* cq() const { return cq_.get(); }
  bool OnLoopThread() const { return std::this_thread::get_id() == thread_.get_id(); }

  // Runs `work` on the loop's helper thread, in order, for work that may block.
  void RunBlocking(std::function<void()> work);

  // Call objects in flight; Shutdown waits for them.
  void CallStarted();
  void CallEnded();

  // REQUIRES: no new call starts (the server shut down, the worker links stopped). Waits up to
  // `grace` for the calls left, then stops the queue and the threads. Idempotent.
  void Shutdown(absl::Duration grace = absl::Seconds(10));

 private:
  void Run();
  void RunHelper();

  const std::unique_ptr<grpc::CompletionQueue> cq_;
  std::thread thread_;

  absl::Mutex mutex_;
  int calls_ ABSL_GUARDED_BY(mutex_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mutex_) = false;
  std::deque<std::function<void()>> blocking_work_ ABSL_GUARDED_BY(mutex_);
  std::thread helper_;
};

// A unary call from a thread other than the loop's: `start` prepares it on the given queue
// (e.g. a stub's PrepareAsyncGetInfo bound to its context and request).
template <typename Response, typename Start>
grpc::Status CallAndWait(GrpcLoop* loop, Start start, Response* response) {
  auto reader = start(loop->cq());
  reader->StartCall();
  grpc::Status status;
  GrpcLoop::WaitTag done;
  reader->Finish(response, &status, &done);
  done.Wait();
  return status;
}

// A server stream read from a thread other than the loop's, one message at a time, the way a
// synchronous ClientReader reads but without that thread polling.
template <typename Message>
class BlockingReader {
 public:
  // `reader` is prepared (PrepareAsync...) on loop->cq(); the call starts here.
  BlockingReader(std::unique_ptr<grpc::ClientAsyncReader<Message>> reader)
      : reader_(std::move(reader)) {
    reader_->StartCall(&tag_);
    started_ = tag_.Wait();
  }

  // False once the stream has ended; Finish then gives its status.
  bool Read(Message* message) {
    if (!started_) return false;
    reader_->Read(message, &tag_);
    return tag_.Wait();
  }

  grpc::Status Finish() {
    grpc::Status status;
    reader_->Finish(&status, &tag_);
    tag_.Wait();
    return status;
  }

 private:
  std::unique_ptr<grpc::ClientAsyncReader<Message>> reader_;
  GrpcLoop::WaitTag tag_;
  bool started_ = false;
};

}  // namespace kvc::router

#endif  // KVCLUSTER_ROUTER_GRPC_LOOP_H_
