#include "router/worker_pool.h"

#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstdio>
#include <set>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/block_hash.h"
#include "common/check.h"

namespace kvc::router {

namespace pb = ::kvcluster::v1;

namespace {

void Log(const std::string& message) { std::fprintf(stderr, "kvc-router: %s\n", message.c_str()); }

std::chrono::system_clock::time_point DeadlineAfter(absl::Duration d) {
  return std::chrono::system_clock::now() + absl::ToChronoMilliseconds(d);
}

}  // namespace

absl::Status ParseHostPort(const std::string& address, std::string* host, std::string* port) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == address.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("worker address '", address, "' is not host:port"));
  }
  *host = address.substr(0, colon);
  *port = address.substr(colon + 1);
  if (host->front() == '[') {
    if (host->back() != ']' || host->size() < 3) {
      return absl::InvalidArgumentError(
          absl::StrCat("worker address '", address, "' has an unterminated IPv6 bracket"));
    }
  } else if (host->find(':') != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("worker address '", address, "': write IPv6 hosts as [addr]:port"));
  }
  for (char c : *host) {
    if (c <= ' ' || c == '/' || c == '?' || c == '#' || c == '@') {
      return absl::InvalidArgumentError(
          absl::StrCat("worker address '", address, "' has an invalid host"));
    }
  }
  int number = 0;
  if (!absl::SimpleAtoi(*port, &number) || number <= 0 || number > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("worker address '", address, "' has an invalid port"));
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// WorkerLink

WorkerLink::WorkerLink(std::string address, pb::WorkerSource source, kvindex::WorkerId index_id,
                       const RouterConfig* config, kvindex::PrefixIndex* index, GrpcLoop* loop)
    : address_(std::move(address)),
      source_(source),
      index_id_(index_id),
      config_(config),
      index_(index),
      loop_(loop) {
  grpc::ChannelArguments args;
  // Reconnect quickly after a worker restarts: the default backoff grows to two minutes.
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS,
              static_cast<int>(absl::ToInt64Milliseconds(config->reconnect_max)));
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
              static_cast<int>(absl::ToInt64Milliseconds(config->reconnect_min)));
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS,
              static_cast<int>(absl::ToInt64Milliseconds(config->reconnect_min)));
  args.SetMaxReceiveMessageSize(256 << 20);
  // The router retries a failed Generate on another worker itself (RoutedGenerate); gRPC's
  // own retry layer would only add a copy of every request and its bookkeeping to each call.
  args.SetInt(GRPC_ARG_ENABLE_RETRIES, 0);
  channel_ = grpc::CreateCustomChannel(address_, grpc::InsecureChannelCredentials(), args);
  stub_ = pb::Worker::NewStub(channel_);
}

WorkerLink::~WorkerLink() { Stop(); }

void WorkerLink::Start() {
  thread_ = std::thread([this] { Run(); });
}

void WorkerLink::Stop() {
  if (!stopping_.HasBeenNotified()) stopping_.Notify();
  {
    absl::MutexLock lock(&mutex_);
    if (stream_context_ != nullptr) stream_context_->TryCancel();
  }
  if (thread_.joinable()) thread_.join();
  ready_ = false;
  RemoveFromIndex();
}

void WorkerLink::RemoveFromIndex() {
  index_->RemoveWorker(index_id_).IgnoreError();
  counters_.indexed_blocks.store(0, std::memory_order_relaxed);
}

pb::WorkerStatus WorkerLink::Status() const {
  absl::MutexLock lock(&mutex_);
  pb::WorkerStatus status;
  status.set_address(address_);
  status.set_state(state_);
  status.set_source(source_);
  status.set_reason(reason_);
  *status.mutable_info() = info_;
  return status;
}

std::string WorkerLink::worker_id() const {
  absl::MutexLock lock(&mutex_);
  return info_.worker_id().empty() ? address_ : info_.worker_id();
}

pb::WorkerLoad WorkerLink::load() const {
  absl::MutexLock lock(&mutex_);
  return load_;
}

void WorkerLink::SetState(pb::WorkerState state, std::string reason) {
  absl::MutexLock lock(&mutex_);
  if (state != state_ || reason != reason_) {
    Log(absl::StrCat("worker ", address_, ": ", pb::WorkerState_Name(state),
                     reason.empty() ? "" : absl::StrCat(" (", reason, ")")));
  }
  state_ = state;
  reason_ = std::move(reason);
  ready_.store(state == pb::WORKER_STATE_READY, std::memory_order_release);
}

bool WorkerLink::SleepOrStop(absl::Duration duration) {
  return stopping_.WaitForNotificationWithTimeout(duration);
}

void WorkerLink::DropBlocksIfDeadTooLong() {
  if (blocks_dropped_ || down_since_ == absl::InfinitePast()) return;
  if (absl::Now() - down_since_ < config_->dead_after) return;
  RemoveFromIndex();
  blocks_dropped_ = true;
  epoch_ = 0;  // its events were lost with it: start over from a snapshot
  Log(absl::StrCat("worker ", address_, ": unreachable for ",
                   absl::FormatDuration(config_->dead_after), ", its blocks left the index"));
}

void WorkerLink::Run() {
  absl::Duration backoff = config_->reconnect_min;
  down_since_ = absl::Now();
  while (!stopping_.HasBeenNotified()) {
    if (Verify()) {
      Stream();
      if (stopping_.HasBeenNotified()) break;
      if (down_since_ == absl::InfinitePast()) {
        backoff = config_->reconnect_min;  // it was up: reconnect quickly
        continue;
      }
    }
    DropBlocksIfDeadTooLong();
    if (SleepOrStop(backoff)) break;
    backoff = std::min(backoff * 2, config_->reconnect_max);
  }
}

bool WorkerLink::Verify() {
  grpc::ClientContext context;
  context.set_deadline(DeadlineAfter(config_->rpc_timeout));
  pb::WorkerInfo info;
  const pb::GetInfoRequest request;
  const grpc::Status status = CallAndWait(
      loop_,
      [&](grpc::CompletionQueue* cq) { return stub_->PrepareAsyncGetInfo(&context, request, cq); },
      &info);
  if (!status.ok()) {
    if (down_since_ == absl::InfinitePast()) down_since_ = absl::Now();
    SetState(pb::WORKER_STATE_UNHEALTHY, absl::StrCat("unreachable: ", status.error_message()));
    return false;
  }
  std::string mismatch;
  if (info.hash().block_size() != config_->hash.block_size) {
    mismatch = absl::StrCat("block size ", info.hash().block_size(), " != router's ",
                            config_->hash.block_size);
  } else if (info.hash().seed() != config_->hash.seed) {
    mismatch = absl::StrCat("hash seed ", info.hash().seed(), " != router's ", config_->hash.seed);
  } else if (info.hash().scheme() != kHashScheme) {
    mismatch = absl::StrCat("hash scheme '", info.hash().scheme(), "' != router's '",
                            std::string(kHashScheme), "'");
  } else if (!config_->model_identity.empty() &&
             info.hash().model_identity() != config_->model_identity) {
    mismatch = absl::StrCat("model identity '", info.hash().model_identity(), "' != router's '",
                            config_->model_identity, "'");
  }
  {
    absl::MutexLock lock(&mutex_);
    info_ = info;
  }
  if (!mismatch.empty()) {
    // Never serve a worker whose blocks can't match the index: every lookup would miss.
    SetState(pb::WORKER_STATE_REFUSED, "refused: " + mismatch);
    RemoveFromIndex();
    epoch_ = 0;
    SleepOrStop(config_->refused_retry);
    return false;
  }
  return true;
}

void WorkerLink::Stream() {
  grpc::ClientContext context;
  pb::SubscribeKvEventsRequest request;
  request.set_subscriber("kvc-router");
  if (epoch_ != 0) {
    request.set_from_seq(next_seq_);
    request.set_epoch(epoch_);
  }
  snapshot_open_ = false;
  snapshot_runs_.clear();
  {
    absl::MutexLock lock(&mutex_);
    if (stopping_.HasBeenNotified()) return;
    stream_context_ = &context;
    last_message_ = absl::Now();
  }
  BlockingReader<pb::KvEventMessage> reader(
      stub_->PrepareAsyncSubscribeKvEvents(&context, request, loop_->cq()));
  pb::KvEventMessage message;
  bool resync = false;
  while (reader.Read(&message)) {
    {
      absl::MutexLock lock(&mutex_);
      last_message_ = absl::Now();
    }
    const bool handled = Handle(message);
    counters_.indexed_blocks.store(index_->GetWorkerSummary(index_id_).blocks.num_blocks,
                                   std::memory_order_relaxed);
    if (!handled) {
      resync = true;
      counters_.resyncs.fetch_add(1);
      epoch_ = 0;
      context.TryCancel();
      break;
    }
  }
  const grpc::Status status = reader.Finish();
  {
    absl::MutexLock lock(&mutex_);
    stream_context_ = nullptr;
  }
  if (stopping_.HasBeenNotified() || resync) return;
  if (down_since_ == absl::InfinitePast()) down_since_ = absl::Now();
  SetState(pb::WORKER_STATE_UNHEALTHY,
           absl::StrCat("event stream lost: ",
                        status.ok() ? "closed by the worker" : status.error_message()));
}

bool WorkerLink::Handle(const pb::KvEventMessage& message) {
  switch (message.kind_case()) {
    case pb::KvEventMessage::kSnapshot: {
      const pb::KvSnapshotChunk& chunk = message.snapshot();
      snapshot_open_ = true;
      for (const pb::BlockStored& stored : chunk.stored()) {
        kvindex::StoredRun run;
        if (stored.has_parent_seq_hash()) run.parent_seq_hash = stored.parent_seq_hash();
        for (const pb::KvBlock& block : stored.blocks()) {
          run.blocks.push_back({block.seq_hash(), block.local_hash()});
        }
        snapshot_runs_.push_back(std::move(run));
      }
      if (!chunk.last()) return true;
      if (epoch_ != 0 && chunk.epoch() != epoch_) {
        counters_.epoch_changes.fetch_add(1);
        Log(absl::StrCat("worker ", address_, ": new epoch ", chunk.epoch(),
                         " (restarted); its blocks are replaced from the snapshot"));
      }
      const absl::Status status = index_->ReplaceWorker(index_id_, snapshot_runs_);
      if (!status.ok()) counters_.orphan_events.fetch_add(1);
      snapshot_runs_.clear();
      snapshot_open_ = false;
      epoch_ = chunk.epoch();
      next_seq_ = chunk.as_of_seq() + 1;
      blocks_dropped_ = false;
      down_since_ = absl::InfinitePast();
      SetState(pb::WORKER_STATE_READY, "");
      return true;
    }
    case pb::KvEventMessage::kBatch: {
      const pb::KvEventBatch& batch = message.batch();
      if (epoch_ == 0 || snapshot_open_ || batch.epoch() != epoch_) {
        counters_.epoch_changes.fetch_add(batch.epoch() != epoch_ && epoch_ != 0 ? 1 : 0);
        return false;
      }
      if (batch.first_seq() != next_seq_) {
        counters_.event_gaps.fetch_add(1);
        Log(absl::StrCat("worker ", address_, ": event gap (expected seq ", next_seq_, ", got ",
                         batch.first_seq(), "); resynchronising"));
        return false;
      }
      for (const pb::KvEvent& event : batch.events()) {
        absl::Status status;
        if (event.has_stored()) {
          std::vector<kvindex::StoredBlock> blocks;
          blocks.reserve(event.stored().blocks_size());
          for (const pb::KvBlock& b : event.stored().blocks()) {
            blocks.push_back({b.seq_hash(), b.local_hash()});
          }
          std::optional<uint64_t> parent;
          if (event.stored().has_parent_seq_hash()) parent = event.stored().parent_seq_hash();
          status = index_->ApplyStored(index_id_, parent, blocks);
        } else if (event.has_removed()) {
          const auto& hashes = event.removed().seq_hashes();
          status =
              index_->ApplyRemoved(index_id_, std::vector<uint64_t>(hashes.begin(), hashes.end()));
        } else {
          status = index_->ApplyCleared(index_id_);
        }
        ++next_seq_;
        counters_.events_applied.fetch_add(1, std::memory_order_relaxed);
        if (!status.ok()) {
          counters_.orphan_events.fetch_add(1);
          Log(absl::StrCat("worker ", address_, ": event ", next_seq_ - 1,
                           " does not fit the index (", status.message(), "); resynchronising"));
          return false;
        }
      }
      if (batch.unix_time_ms() > 0) {
        counters_.event_lag_us.store(
            absl::ToInt64Microseconds(absl::Now() - absl::FromUnixMillis(batch.unix_time_ms())),
            std::memory_order_relaxed);
      }
      down_since_ = absl::InfinitePast();
      SetState(pb::WORKER_STATE_READY, "");
      return true;
    }
    case pb::KvEventMessage::kHeartbeat: {
      const pb::KvHeartbeat& heartbeat = message.heartbeat();
      if (epoch_ == 0 || snapshot_open_ || heartbeat.epoch() != epoch_) return false;
      if (heartbeat.last_seq() + 1 != next_seq_) {
        counters_.event_gaps.fetch_add(1);
        return false;
      }
      const kvindex::WorkerSummary summary = index_->GetWorkerSummary(index_id_);
      if (summary.blocks.num_blocks != heartbeat.num_blocks() ||
          summary.blocks.digest != heartbeat.digest()) {
        counters_.digest_mismatches.fetch_add(1);
        Log(absl::StrCat("worker ", address_, ": index holds ", summary.blocks.num_blocks,
                         " blocks, the worker ", heartbeat.num_blocks(),
                         " (digest mismatch at seq ", heartbeat.last_seq(), "); resynchronising"));
        return false;
      }
      down_since_ = absl::InfinitePast();
      SetState(pb::WORKER_STATE_READY, "");
      return true;
    }
    case pb::KvEventMessage::KIND_NOT_SET:
      return true;
  }
  return true;
}

void WorkerLink::Poll() {
  {
    absl::MutexLock lock(&mutex_);
    if (stream_context_ != nullptr && absl::Now() - last_message_ > config_->stream_timeout) {
      reason_ = "event stream silent";
      stream_context_->TryCancel();
    }
  }
  if (!ready()) return;
  grpc::ClientContext context;
  context.set_deadline(DeadlineAfter(config_->rpc_timeout));
  pb::WorkerLoad load;
  // The worker's count includes this router's requests as of some moment during the call;
  // subtracting the larger of this router's own count before and after it never mistakes a
  // request that just finished here for someone else's load.
  const int64_t own_before = counters_.active_tokens.load(std::memory_order_relaxed);
  const pb::GetLoadRequest request;
  if (CallAndWait(
          loop_,
          [&](grpc::CompletionQueue* cq) {
            return stub_->PrepareAsyncGetLoad(&context, request, cq);
          },
          &load)
          .ok()) {
    const int64_t own_after = counters_.active_tokens.load(std::memory_order_relaxed);
    counters_.external_tokens_in_flight.store(
        std::max<int64_t>(
            0, static_cast<int64_t>(load.tokens_in_flight()) - std::max(own_before, own_after)),
        std::memory_order_relaxed);
    absl::MutexLock lock(&mutex_);
    load_ = load;
  }
}

// ---------------------------------------------------------------------------------------------
// WorkerPool

WorkerPool::WorkerPool(const RouterConfig& config, kvindex::PrefixIndex* index, GrpcLoop* loop)
    : config_(config), index_(index), loop_(loop) {
  poller_ = std::thread([this] { PollLoop(); });
}

WorkerPool::~WorkerPool() { Stop(); }

void WorkerPool::Stop() {
  if (!stopping_.HasBeenNotified()) stopping_.Notify();
  if (poller_.joinable()) poller_.join();
  if (resolver_.joinable()) resolver_.join();
  std::vector<std::shared_ptr<WorkerLink>> links = All();
  for (auto& link : links) link->Stop();
}

absl::StatusOr<std::shared_ptr<WorkerLink>> WorkerPool::Add(const std::string& address,
                                                            pb::WorkerSource source) {
  std::string host, port;
  if (absl::Status status = ParseHostPort(address, &host, &port); !status.ok()) return status;
  std::shared_ptr<WorkerLink> link;
  {
    absl::MutexLock lock(&mutex_);
    if (workers_.contains(address)) {
      return absl::AlreadyExistsError(absl::StrCat("worker ", address, " is already registered"));
    }
    kvindex::WorkerId id;
    if (!free_ids_.empty()) {
      id = free_ids_.back();
      free_ids_.pop_back();
    } else if (next_id_ < (1u << 16)) {
      id = next_id_++;
    } else {
      return absl::ResourceExhaustedError("too many workers (65536)");
    }
    link = std::make_shared<WorkerLink>(address, source, id, &config_, index_, loop_);
    workers_[address] = link;
    auto ordered = std::make_shared<WorkerList>(*ordered_);
    ordered->insert(
        std::lower_bound(ordered->begin(), ordered->end(), address,
                         [](const auto& w, const std::string& a) { return w->address() < a; }),
        link);
    ordered_ = std::move(ordered);
  }
  Log(absl::StrCat("worker ", address, " added (", pb::WorkerSource_Name(source), ")"));
  link->Start();
  return link;
}

absl::Status WorkerPool::Remove(const std::string& address) {
  std::shared_ptr<WorkerLink> link;
  {
    absl::MutexLock lock(&mutex_);
    auto it = workers_.find(address);
    if (it == workers_.end()) {
      return absl::NotFoundError(absl::StrCat("worker ", address, " is not registered"));
    }
    link = it->second;
    workers_.erase(it);
    auto ordered = std::make_shared<WorkerList>(*ordered_);
    ordered->erase(std::find(ordered->begin(), ordered->end(), link));
    ordered_ = std::move(ordered);
  }
  link->Stop();  // joins its thread and drops its blocks before the id is reused
  absl::MutexLock lock(&mutex_);
  free_ids_.push_back(link->index_id());
  Log(absl::StrCat("worker ", address, " removed"));
  return absl::OkStatus();
}

std::shared_ptr<const WorkerList> WorkerPool::Snapshot() const {
  absl::MutexLock lock(&mutex_);
  return ordered_;
}

WorkerList WorkerPool::Ready() const {
  const std::shared_ptr<const WorkerList> all = Snapshot();
  WorkerList out;
  out.reserve(all->size());
  for (const auto& link : *all) {
    if (link->ready()) out.push_back(link);
  }
  return out;
}

WorkerList WorkerPool::All() const { return *Snapshot(); }

std::shared_ptr<WorkerLink> WorkerPool::Find(const std::string& address) const {
  absl::MutexLock lock(&mutex_);
  auto it = workers_.find(address);
  return it == workers_.end() ? nullptr : it->second;
}

void WorkerPool::PollLoop() {
  while (!stopping_.WaitForNotificationWithTimeout(config_.load_interval)) {
    for (const auto& link : All()) link->Poll();
  }
}

absl::Status WorkerPool::FollowDns(const std::string& name_and_port) {
  std::string host, port;
  if (absl::Status status = ParseHostPort(name_and_port, &host, &port); !status.ok()) {
    return status;
  }
  KVC_CHECK(!resolver_.joinable(), "FollowDns called twice");
  resolver_ = std::thread([this, host, port] { DnsLoop(host, port); });
  return absl::OkStatus();
}

void WorkerPool::DnsLoop(std::string host, std::string port) {
  do {
    addrinfo hints = {};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* result = nullptr;
    const int error = getaddrinfo(host.c_str(), port.c_str(), &hints, &result);
    if (error != 0) {
      Log(absl::StrCat("cannot resolve ", host, ": ", gai_strerror(error)));
      continue;  // keep the workers we have
    }
    std::set<std::string> found;
    for (addrinfo* a = result; a != nullptr; a = a->ai_next) {
      char text[NI_MAXHOST];
      if (getnameinfo(a->ai_addr, a->ai_addrlen, text, sizeof(text), nullptr, 0, NI_NUMERICHOST) !=
          0) {
        continue;
      }
      found.insert(a->ai_family == AF_INET6 ? absl::StrCat("[", text, "]:", port)
                                            : absl::StrCat(text, ":", port));
    }
    freeaddrinfo(result);
    for (const std::string& address : found) {
      if (Find(address) == nullptr) Add(address, pb::WORKER_SOURCE_DNS).IgnoreError();
    }
    for (const auto& link : All()) {
      if (link->source() == pb::WORKER_SOURCE_DNS && !found.contains(link->address())) {
        Remove(link->address()).IgnoreError();
      }
    }
  } while (!stopping_.WaitForNotificationWithTimeout(config_.dns_refresh));
}

}  // namespace kvc::router
