#include "tools/kvbench/runner.h"

#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "common/check.h"
#include "kvcluster/v1/kvcluster.grpc.pb.h"

namespace kvc::kvbench {
namespace {

namespace pb = ::kvcluster::v1;
using Clock = std::chrono::steady_clock;

double MillisBetween(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double, std::milli>(to - from).count();
}

std::chrono::system_clock::time_point DeadlineAfter(absl::Duration timeout) {
  return std::chrono::system_clock::now() + absl::ToChronoMilliseconds(timeout);
}

std::shared_ptr<grpc::Channel> NewChannel(const std::string& address, int index) {
  grpc::ChannelArguments args;
  // A channel of its own (not a shared subchannel) is its own TCP connection.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetInt("kvbench.channel_index", index);
  args.SetMaxReceiveMessageSize(64 << 20);
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
}

// User plus system CPU seconds of a process, from /proc/PID/stat; -1 when unreadable.
double ProcessCpuSeconds(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t name_end = text.rfind(')');
  if (name_end == std::string::npos) return -1;
  // After "pid (comm)" come state (field 3) ... utime (14) and stime (15).
  std::istringstream fields(text.substr(name_end + 2));
  std::string field;
  double utime = 0, stime = 0;
  for (int number = 3; number <= 15 && fields >> field; ++number) {
    if (number == 14) utime = std::stod(field);
    if (number == 15) stime = std::stod(field);
  }
  return (utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

class Run;

// One Generate stream. Owns itself from Start() until OnDone, where it reports and deletes
// itself. gRPC calls its reactions one at a time, so its fields need no lock.
class GenerateCall final : public grpc::ClientReadReactor<pb::GenerateResponse> {
 public:
  GenerateCall(Run* run, size_t index, const BenchRequest& request, double send_s,
               double send_lag_ms);
  void Start(pb::Router::Stub* stub, absl::Duration timeout);
  void OnReadDone(bool ok) override;
  void OnDone(const grpc::Status& status) override;

 private:
  Run* const run_;
  grpc::ClientContext context_;
  pb::GenerateRequest request_;
  pb::GenerateResponse response_;
  RequestResult result_;
  Clock::time_point sent_;
  Clock::time_point first_token_;
  Clock::time_point last_token_;
  bool have_first_token_ = false;
  bool have_result_ = false;
};

// The state one run shares between the dispatcher, the gRPC callbacks and the monitor.
class Run {
 public:
  Run(const Workload& workload, const RunOptions& options)
      : workload_(workload), options_(options), results_(workload.requests.size()) {}

  absl::StatusOr<RunResult> Execute();
  void Finished(RequestResult result);

 private:
  void Dispatch();
  void Monitor();
  void PrintProgress(bool final) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  void SampleEventLag();

  const Workload& workload_;
  const RunOptions& options_;
  std::vector<std::unique_ptr<pb::Router::Stub>> stubs_;
  std::unique_ptr<pb::Router::Stub> stats_stub_;
  Clock::time_point start_;

  absl::Mutex mutex_;
  // State below is protected by mutex_.
  std::vector<RequestResult> results_ ABSL_GUARDED_BY(mutex_);
  size_t sent_ ABSL_GUARDED_BY(mutex_) = 0;
  size_t done_ ABSL_GUARDED_BY(mutex_) = 0;
  size_t failed_ ABSL_GUARDED_BY(mutex_) = 0;
  int in_flight_ ABSL_GUARDED_BY(mutex_) = 0;
  uint64_t prompt_tokens_ ABSL_GUARDED_BY(mutex_) = 0;
  uint64_t cached_tokens_ ABSL_GUARDED_BY(mutex_) = 0;
  double ttft_sum_ms_ ABSL_GUARDED_BY(mutex_) = 0;
  std::string first_error_ ABSL_GUARDED_BY(mutex_);
  Clock::time_point last_finish_ ABSL_GUARDED_BY(mutex_);
  bool monitor_stop_ ABSL_GUARDED_BY(mutex_) = false;

  // Written by the monitor thread only, read after it is joined.
  RouterUsage router_usage_;
};

GenerateCall::GenerateCall(Run* run, size_t index, const BenchRequest& request, double send_s,
                           double send_lag_ms)
    : run_(run) {
  request_.set_request_id(absl::StrCat("kvbench-", index));
  request_.mutable_token_ids()->mutable_ids()->Add(request.prompt.begin(), request.prompt.end());
  request_.mutable_sampling()->set_max_tokens(static_cast<int32_t>(request.max_tokens));
  request_.mutable_sampling()->set_ignore_eos(true);
  result_.index = index;
  result_.label = request.label;
  result_.send_s = send_s;
  result_.send_lag_ms = send_lag_ms;
}

void GenerateCall::Start(pb::Router::Stub* stub, absl::Duration timeout) {
  context_.set_deadline(DeadlineAfter(timeout));
  sent_ = Clock::now();
  stub->async()->Generate(&context_, &request_, this);
  StartRead(&response_);
  StartCall();
}

void GenerateCall::OnReadDone(bool ok) {
  if (!ok) return;  // the stream ended; OnDone follows
  const Clock::time_point now = Clock::now();
  if (response_.chunk().token_ids_size() > 0 || response_.has_result()) {
    if (!have_first_token_) first_token_ = now;
    have_first_token_ = true;
    last_token_ = now;
  }
  if (response_.has_result()) {
    const pb::GenerateResult& result = response_.result();
    have_result_ = true;
    result_.prompt_tokens = result.usage().prompt_tokens();
    result_.cached_tokens = result.usage().cached_prompt_tokens();
    result_.completion_tokens = result.usage().completion_tokens();
    result_.worker_id = result.worker_id();
  }
  StartRead(&response_);
}

void GenerateCall::OnDone(const grpc::Status& status) {
  const Clock::time_point now = Clock::now();
  result_.e2e_ms = MillisBetween(sent_, now);
  if (!status.ok()) {
    result_.error =
        absl::StrCat(static_cast<int>(status.error_code()), ": ", status.error_message());
  } else if (!have_result_) {
    result_.error = "the stream ended without a result";
  } else {
    result_.ok = true;
    result_.ttft_ms = MillisBetween(sent_, first_token_);
    if (result_.completion_tokens > 1) {
      result_.tpot_ms = MillisBetween(first_token_, last_token_) / (result_.completion_tokens - 1);
    }
  }
  run_->Finished(std::move(result_));
  delete this;
}

void Run::Finished(RequestResult result) {
  absl::MutexLock lock(&mutex_);
  ++done_;
  --in_flight_;
  last_finish_ = Clock::now();
  if (result.ok) {
    prompt_tokens_ += result.prompt_tokens;
    cached_tokens_ += result.cached_tokens;
    ttft_sum_ms_ += result.ttft_ms;
  } else {
    ++failed_;
    if (first_error_.empty()) first_error_ = result.error;
  }
  const size_t index = result.index;
  results_[index] = std::move(result);
}

void Run::Dispatch() {
  const size_t total = workload_.requests.size();
  for (size_t i = 0; i < total; ++i) {
    const BenchRequest& request = workload_.requests[i];
    if (options_.concurrency > 0) {
      absl::MutexLock lock(&mutex_);
      auto room = [this] { return in_flight_ < options_.concurrency; };
      mutex_.Await(absl::Condition(&room));
    } else {
      std::this_thread::sleep_until(start_ + std::chrono::duration_cast<Clock::duration>(
                                                 std::chrono::duration<double>(request.arrival_s)));
    }
    const double send_s = std::chrono::duration<double>(Clock::now() - start_).count();
    const double lag_ms = options_.concurrency > 0 ? 0 : (send_s - request.arrival_s) * 1000;
    {
      absl::MutexLock lock(&mutex_);
      ++sent_;
      ++in_flight_;
    }
    auto* call = new GenerateCall(this, i, request, send_s, lag_ms);
    call->Start(stubs_[i % stubs_.size()].get(), options_.request_timeout);
  }
}

void Run::SampleEventLag() {
  grpc::ClientContext context;
  context.set_deadline(DeadlineAfter(absl::Seconds(1)));
  pb::StatsResponse stats;
  if (!stats_stub_->GetStats(&context, pb::GetStatsRequest(), &stats).ok()) return;
  const double lag = stats.total().event_lag_seconds();
  RouterUsage& usage = router_usage_;
  usage.routing_accuracy = stats.total().routing_accuracy();
  usage.event_lag_max_s = std::max(usage.event_lag_max_s, lag);
  usage.event_lag_mean_s += (lag - usage.event_lag_mean_s) / ++usage.event_lag_samples;
}

void Run::PrintProgress(bool final) {
  const double elapsed = std::chrono::duration<double>(Clock::now() - start_).count();
  const size_t ok = done_ - failed_;
  const std::string line = absl::StrFormat(
      "%s: %d/%d sent, %d done, %d failed, %d in flight, %.0f s, mean TTFT %.0f ms, hit rate "
      "%.1f%%",
      options_.progress_name, sent_, workload_.requests.size(), done_, failed_, in_flight_, elapsed,
      ok ? ttft_sum_ms_ / ok : 0.0, prompt_tokens_ ? 100.0 * cached_tokens_ / prompt_tokens_ : 0.0);
  if (isatty(STDERR_FILENO)) {
    std::fprintf(stderr, "\r\033[K%s%s", line.c_str(), final ? "\n" : "");
  } else {
    std::fprintf(stderr, "%s\n", line.c_str());
  }
}

void Run::Monitor() {
  const bool tty = isatty(STDERR_FILENO);
  const absl::Duration progress_every = tty ? absl::Milliseconds(500) : absl::Seconds(5);
  absl::Time next_progress = absl::Now() + progress_every;
  absl::Time next_sample = absl::Now();
  while (true) {
    if (absl::Now() >= next_sample) {
      SampleEventLag();
      next_sample = std::max(next_sample + absl::Seconds(1), absl::Now());
    }
    absl::MutexLock lock(&mutex_);
    if (absl::Now() >= next_progress) {
      if (!options_.progress_name.empty()) PrintProgress(false);
      next_progress = std::max(next_progress + progress_every, absl::Now());
    }
    auto stop = [this] { return monitor_stop_; };
    if (mutex_.AwaitWithDeadline(absl::Condition(&stop), std::min(next_progress, next_sample))) {
      if (!options_.progress_name.empty()) PrintProgress(true);
      return;
    }
  }
}

absl::StatusOr<RunResult> Run::Execute() {
  if (options_.concurrency < 0) return absl::InvalidArgumentError("concurrency must be >= 0");
  if (options_.channels <= 0) return absl::InvalidArgumentError("channels must be > 0");
  if (workload_.requests.empty()) return absl::InvalidArgumentError("the workload is empty");
  for (int i = 0; i < options_.channels; ++i) {
    auto channel = NewChannel(options_.router, i);
    if (i == 0 && !channel->WaitForConnected(DeadlineAfter(absl::Seconds(10)))) {
      return absl::UnavailableError(absl::StrCat("cannot reach the router at ", options_.router));
    }
    stubs_.push_back(pb::Router::NewStub(channel));
  }
  stats_stub_ = pb::Router::NewStub(NewChannel(options_.router, options_.channels));

  const double cpu_before = options_.router_pid > 0 ? ProcessCpuSeconds(options_.router_pid) : -1;
  start_ = Clock::now();
  {
    absl::MutexLock lock(&mutex_);
    last_finish_ = start_;
  }
  std::thread monitor([this] { Monitor(); });
  Dispatch();
  double duration_s = 0;
  {
    absl::MutexLock lock(&mutex_);
    auto all_done = [this] { return done_ == workload_.requests.size(); };
    mutex_.Await(absl::Condition(&all_done));
    duration_s = std::chrono::duration<double>(last_finish_ - start_).count();
    monitor_stop_ = true;
  }
  monitor.join();
  SampleEventLag();  // also the routing accuracy over the whole run
  const double cpu_after = options_.router_pid > 0 ? ProcessCpuSeconds(options_.router_pid) : -1;

  RunResult run;
  run.duration_s = duration_s;
  run.router = router_usage_;
  if (cpu_before >= 0 && cpu_after >= 0 && duration_s > 0) {
    run.router.measured = true;
    run.router.cpu_seconds = cpu_after - cpu_before;
    run.router.cpu_cores = run.router.cpu_seconds / duration_s;
  }
  absl::MutexLock lock(&mutex_);
  if (failed_ > 0 && !options_.progress_name.empty()) {
    std::fprintf(stderr, "%s: %zu of %zu requests failed; the first: %s\n",
                 options_.progress_name.c_str(), failed_, done_, first_error_.c_str());
  }
  run.results = std::move(results_);
  return run;
}

}  // namespace

absl::StatusOr<ClusterInfo> QueryCluster(const std::string& router, absl::Duration timeout) {
  auto channel = grpc::CreateChannel(router, grpc::InsecureChannelCredentials());
  if (!channel->WaitForConnected(DeadlineAfter(timeout))) {
    return absl::UnavailableError(absl::StrCat("cannot reach the router at ", router));
  }
  auto stub = pb::Router::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(DeadlineAfter(timeout));
  pb::ListWorkersResponse workers;
  if (const grpc::Status status = stub->ListWorkers(&context, {}, &workers); !status.ok()) {
    return absl::UnavailableError(
        absl::StrCat("ListWorkers on ", router, " failed: ", status.error_message()));
  }
  ClusterInfo info;
  for (const pb::WorkerStatus& worker : workers.workers()) {
    if (worker.state() != pb::WORKER_STATE_READY) continue;
    const pb::WorkerInfo& w = worker.info();
    info.worker_ids.push_back(w.worker_id());
    info.vocab_size = info.vocab_size ? std::min(info.vocab_size, w.vocab_size()) : w.vocab_size();
    info.max_context_tokens = info.max_context_tokens
                                  ? std::min(info.max_context_tokens, w.max_context_tokens())
                                  : w.max_context_tokens();
    info.block_size = w.hash().block_size();
    info.capacity_blocks = info.capacity_blocks
                               ? std::min<uint64_t>(info.capacity_blocks, w.capacity_blocks())
                               : w.capacity_blocks();
    info.kv_bytes_per_token = w.kv_bytes_per_token();
    info.backend = w.backend();
    info.model_name = w.model_name();
  }
  if (info.worker_ids.empty()) {
    return absl::UnavailableError(absl::StrCat("the router at ", router, " has no READY worker"));
  }
  return info;
}

absl::StatusOr<RunResult> RunWorkload(const Workload& workload, const RunOptions& options) {
  Run run(workload, options);
  return run.Execute();
}

}  // namespace kvc::kvbench
