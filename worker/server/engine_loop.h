// The engine thread: owns the Engine (and through it the block manager, scheduler and
// backend) and runs steps while there is work. Request handlers talk to it only through the
// thread-safe methods below, which queue commands; results come back through each request's
// RequestSink, called on the engine thread. Events go to the EventHub after every step.
//
// Thread-safety: the public methods are thread-safe. The engine itself is touched only by
// the engine thread (so it needs no locks); state below marked GUARDED_BY is shared.
#ifndef KVCLUSTER_WORKER_SERVER_ENGINE_LOOP_H_
#define KVCLUSTER_WORKER_SERVER_ENGINE_LOOP_H_

#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "worker/backend/backend.h"
#include "worker/engine/engine.h"
#include "worker/server/event_hub.h"

namespace kvc::server {

// Receives one request's results. Called on the engine thread: implementations must only
// queue the result and return.
class RequestSink {
 public:
  virtual ~RequestSink() = default;
  // Tokens of one step; the last call has finish_reason != kNone.
  virtual void OnOutput(const engine::RequestOutput& output) = 0;
  // The engine refused the request (bad input, or the engine failed); nothing follows.
  virtual void OnError(const absl::Status& status) = 0;
};

struct SubmitArgs {
  engine::SequenceId id = 0;
  std::vector<int32_t> prompt;
  engine::GenerationOptions options;
  uint64_t seed = 0;
  std::shared_ptr<RequestSink> sink;
};

class EngineLoop {
 public:
  EngineLoop(std::unique_ptr<backend::Backend> backend, const engine::EngineOptions& options,
             EventHub* hub);
  ~EngineLoop();

  // Starts the engine thread.
  void Start();
  // Finishes what is queued and running when `drain`, else cancels it; then joins the thread.
  void Stop(bool drain);

  // Queues a request; its results (or the engine's refusal) reach args.sink on the engine
  // thread, never from inside this call. UNAVAILABLE when the loop is stopping.
  absl::Status Submit(SubmitArgs args);
  void Cancel(engine::SequenceId id);

  // Every cached block as Stored runs, and the event seq they are current as of (events up
  // to it are already in the hub). Runs on the engine thread between steps.
  struct Snapshot {
    std::vector<engine::StoredEvent> runs;
    uint64_t as_of_seq = 0;
    uint64_t num_blocks = 0;
  };
  Snapshot TakeSnapshot();

  engine::EngineLoad Load() const;
  const backend::Backend& backend() const { return *backend_; }
  int max_context_tokens() const { return engine_.max_context_tokens(); }

 private:
  void Run();
  // Runs queued commands on the engine thread.
  void DrainCommands();
  void PublishEvents();
  void Deliver(std::vector<engine::RequestOutput>* outputs);
  void RunOnEngineThread(std::function<void()> fn);

  std::unique_ptr<backend::Backend> backend_;
  engine::Engine engine_;  // engine thread only
  EventHub* const hub_;
  uint64_t published_seq_ = 0;  // engine thread only
  bool finishing_ = false;      // engine thread only: refuse late submissions
  absl::flat_hash_map<engine::SequenceId, std::shared_ptr<RequestSink>> sinks_;  // engine thread
  std::thread thread_;

  mutable absl::Mutex mutex_;
  std::vector<std::function<void()>> commands_ ABSL_GUARDED_BY(mutex_);
  bool stopping_ ABSL_GUARDED_BY(mutex_) = false;
  // False once the engine thread has finished: commands then run (or fail) on the caller.
  bool running_ ABSL_GUARDED_BY(mutex_) = false;
  // The engine thread has returned: the engine may be used from the caller's thread.
  bool exited_ ABSL_GUARDED_BY(mutex_) = true;
  bool drain_ ABSL_GUARDED_BY(mutex_) = true;
  engine::EngineLoad load_ ABSL_GUARDED_BY(mutex_);
};

}  // namespace kvc::server

#endif  // KVCLUSTER_WORKER_SERVER_ENGINE_LOOP_H_
