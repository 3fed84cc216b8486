#include "worker/server/engine_loop.h"

#include <cstdio>
#include <future>
#include <utility>

#include "common/check.h"

namespace kvc::server {

EngineLoop::EngineLoop(std::unique_ptr<backend::Backend> backend,
                       const engine::EngineOptions& options, EventHub* hub)
    : backend_(std::move(backend)), engine_(backend_.get(), options), hub_(hub) {
  KVC_CHECK(hub->epoch() == options.epoch, "the event hub and the engine disagree on the epoch");
}

EngineLoop::~EngineLoop() { Stop(/*drain=*/false); }

void EngineLoop::Start() {
  KVC_CHECK(!thread_.joinable(), "engine loop started twice");
  absl::MutexLock lock(&mutex_);
  running_ = true;
  exited_ = false;
  thread_ = std::thread([this] { Run(); });
}

void EngineLoop::Stop(bool drain) {
  {
    absl::MutexLock lock(&mutex_);
    stopping_ = true;
    drain_ = drain;
  }
  if (thread_.joinable()) thread_.join();
}

absl::Status EngineLoop::Submit(SubmitArgs args) {
  auto shared = std::make_shared<SubmitArgs>(std::move(args));
  absl::MutexLock lock(&mutex_);
  if (stopping_ || !running_) return absl::UnavailableError("the worker is shutting down");
  commands_.push_back([this, shared] {
    if (finishing_) {
      shared->sink->OnError(absl::UnavailableError("the worker is shutting down"));
      return;
    }
    absl::Status status = engine_.Submit(shared->id, std::move(shared->prompt),
                                         std::move(shared->options), shared->seed);
    if (!status.ok()) {
      shared->sink->OnError(status);
      return;
    }
    sinks_[shared->id] = std::move(shared->sink);
  });
  return absl::OkStatus();
}

void EngineLoop::Cancel(engine::SequenceId id) {
  absl::MutexLock lock(&mutex_);
  commands_.push_back([this, id] { engine_.Cancel(id); });
}

EngineLoop::Snapshot EngineLoop::TakeSnapshot() {
  Snapshot snapshot;
  RunOnEngineThread([&] {
    PublishEvents();
    snapshot.runs = engine_.blocks().Snapshot();
    snapshot.as_of_seq = engine_.blocks().events().last_seq();
    snapshot.num_blocks = engine_.blocks().num_cached_blocks();
  });
  return snapshot;
}

engine::EngineLoad EngineLoop::Load() const {
  absl::MutexLock lock(&mutex_);
  return load_;
}

void EngineLoop::RunOnEngineThread(std::function<void()> fn) {
  std::promise<void> done;
  {
    absl::MutexLock lock(&mutex_);
    if (!running_) {
      // The engine thread is finishing or gone: wait until it is gone, then run here.
      mutex_.Await(absl::Condition(&exited_));
      fn();
      return;
    }
    commands_.push_back([&] {
      fn();
      done.set_value();
    });
  }
  done.get_future().wait();
}

void EngineLoop::DrainCommands() {
  std::vector<std::function<void()>> commands;
  {
    absl::MutexLock lock(&mutex_);
    commands.swap(commands_);
  }
  for (auto& command : commands) command();
}

void EngineLoop::Run() {
  std::vector<engine::RequestOutput> outputs;
  while (true) {
    {
      absl::MutexLock lock(&mutex_);
      // Sleep while there is nothing to do; wake on a command or on Stop.
      auto has_work = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
        return !commands_.empty() || stopping_ || !engine_.idle();
      };
      mutex_.Await(absl::Condition(&has_work));
      if (stopping_ && (!drain_ || engine_.idle()) && commands_.empty()) break;
    }
    DrainCommands();
    absl::Status status = engine_.Step(&outputs);
    if (!status.ok()) {
      std::fprintf(stderr, "kvc-worker: forward step failed: %s\n", status.ToString().c_str());
    }
    // Events first: a client that sends its next request the moment it sees this one's result
    // should find the router already told about the blocks this step cached.
    PublishEvents();
    Deliver(&outputs);
    absl::MutexLock lock(&mutex_);
    load_ = engine_.Load();
  }
  // Cancel whatever is left so every client gets a final answer.
  finishing_ = true;
  std::vector<engine::SequenceId> left;
  for (const auto& [id, sink] : sinks_) left.push_back(id);
  for (engine::SequenceId id : left) engine_.Cancel(id);
  DrainCommands();
  engine_.Step(&outputs).IgnoreError();  // only delivers the cancellations
  Deliver(&outputs);
  PublishEvents();
  {
    absl::MutexLock lock(&mutex_);
    running_ = false;
  }
  DrainCommands();  // snapshots asked for before running_ went false
  absl::MutexLock lock(&mutex_);
  exited_ = true;
}

void EngineLoop::Deliver(std::vector<engine::RequestOutput>* outputs) {
  for (const engine::RequestOutput& output : *outputs) {
    auto it = sinks_.find(output.id);
    if (it == sinks_.end()) continue;
    it->second->OnOutput(output);
    if (output.finish_reason != engine::FinishReason::kNone) sinks_.erase(it);
  }
  outputs->clear();
}

void EngineLoop::PublishEvents() {
  const engine::KvEventLog& log = engine_.blocks().events();
  if (log.last_seq() == published_seq_) return;
  auto events = log.Since(published_seq_ + 1);
  KVC_CHECK(events.has_value(), "the engine's event log overflowed within one step");
  published_seq_ = log.last_seq();
  hub_->Publish(std::move(*events), engine_.blocks().digest());
}

}  // namespace kvc::server
