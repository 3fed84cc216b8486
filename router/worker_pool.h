// The router's workers: who they are (static list, DNS, RegisterWorker), whether they may get
// traffic, and one KV-event subscription each that keeps the prefix index exact.
//
// Each worker has its own thread (WorkerLink) that verifies the worker's hashing contract
// (GetInfo), subscribes to its events, applies them to the index, checks heartbeats, and on
// gaps, epoch changes, digest mismatches or stream loss resynchronises or reconnects with
// backoff; a worker unreachable past dead_after loses its blocks in the index. One poller
// thread fetches every worker's load and restarts silent streams; one resolver thread
// follows a DNS name. Routing only reads: it takes a snapshot of the ready workers and reads
// their atomic counters, never waiting on event ingestion. The links' gRPC calls run on the
// router's GrpcLoop: their threads wait for each message without polling themselves.
//
// Thread-safety: WorkerPool is thread-safe. Each WorkerLink's state is guarded by its own
// mutex (or atomic); its event handling runs only on its own thread.
#ifndef KVCLUSTER_ROUTER_WORKER_POOL_H_
#define KVCLUSTER_ROUTER_WORKER_POOL_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "kvcluster/v1/kvcluster.grpc.pb.h"
#include "kvindex/prefix_index.h"
#include "router/config.h"
#include "router/grpc_loop.h"

namespace kvc::router {

// Counters of one worker, updated lock-free by the request path and the link thread.
struct WorkerCounters {
  std::atomic<uint64_t> requests{0};
  std::atomic<uint64_t> failed_requests{0};
  std::atomic<uint64_t> prompt_tokens{0};
  std::atomic<uint64_t> predicted_cached_tokens{0};
  std::atomic<uint64_t> actual_cached_tokens{0};
  std::atomic<uint64_t> completed_requests{0};
  std::atomic<uint64_t> accurate_predictions{0};
  std::atomic<int> active_requests{0};
  std::atomic<int64_t> active_tokens{0};
  std::atomic<uint64_t> resyncs{0};
  std::atomic<uint64_t> digest_mismatches{0};
  std::atomic<uint64_t> event_gaps{0};
  std::atomic<uint64_t> epoch_changes{0};
  std::atomic<uint64_t> orphan_events{0};
  std::atomic<uint64_t> events_applied{0};
  std::atomic<int64_t> event_lag_us{0};
  // Tokens in flight on the worker that this router did not send (other routers, direct
  // clients): the worker's GetLoad count minus this router's own at the time of the poll.
  std::atomic<int64_t> external_tokens_in_flight{0};
  // Blocks the index holds for the worker, refreshed by the link thread after every change it
  // applies, so that routing reads one atomic rather than taking the index's lock per worker.
  std::atomic<uint64_t> indexed_blocks{0};
};

class WorkerLink {
 public:
  WorkerLink(std::string address, kvcluster::v1::WorkerSource source, kvindex::WorkerId index_id,
             const RouterConfig* config, kvindex::PrefixIndex* index, GrpcLoop* loop);
  ~WorkerLink();

  void Start();
  // Stops the thread and drops the worker's blocks from the index.
  void Stop();

  const std::string& address() const { return address_; }
  kvcluster::v1::WorkerSource source() const { return source_; }
  kvindex::WorkerId index_id() const { return index_id_; }
  kvcluster::v1::Worker::Stub* stub() const { return stub_.get(); }
  WorkerCounters& counters() { return counters_; }
  const WorkerCounters& counters() const { return counters_; }

  bool ready() const { return ready_.load(std::memory_order_acquire); }
  kvcluster::v1::WorkerStatus Status() const;
  // The worker's own id (from GetInfo), or its address before it answered.
  std::string worker_id() const;
  kvcluster::v1::WorkerLoad load() const;

  // Poller thread: refreshes the load, and restarts the stream if it went silent.
  void Poll();

 private:
  void Run();
  // Connects, checks the contract; false (with the state set) when the worker is not usable.
  bool Verify();
  // Streams events until the stream ends or needs a resync.
  void Stream();
  // Applies one stream message; false when the stream must be restarted with a snapshot.
  bool Handle(const kvcluster::v1::KvEventMessage& message);
  void SetState(kvcluster::v1::WorkerState state, std::string reason);
  // Sleeps up to `duration`, returning early (true) when stopping.
  bool SleepOrStop(absl::Duration duration);
  void DropBlocksIfDeadTooLong();
  // Drops the worker's blocks from the index (and the indexed_blocks counter).
  void RemoveFromIndex();

  const std::string address_;
  const kvcluster::v1::WorkerSource source_;
  const kvindex::WorkerId index_id_;
  const RouterConfig* const config_;
  kvindex::PrefixIndex* const index_;
  GrpcLoop* const loop_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<kvcluster::v1::Worker::Stub> stub_;
  WorkerCounters counters_;
  std::atomic<bool> ready_{false};
  absl::Notification stopping_;
  std::thread thread_;

  // Link-thread state (the event position in the worker's numbering).
  uint64_t epoch_ = 0;  // 0: unknown, the next subscription asks for a snapshot
  uint64_t next_seq_ = 0;
  bool snapshot_open_ = false;
  std::vector<kvindex::StoredRun> snapshot_runs_;
  absl::Time down_since_ = absl::InfinitePast();  // InfinitePast: not down
  bool blocks_dropped_ = false;

  mutable absl::Mutex mutex_;
  kvcluster::v1::WorkerState state_ ABSL_GUARDED_BY(mutex_) =
      kvcluster::v1::WORKER_STATE_CONNECTING;
  std::string reason_ ABSL_GUARDED_BY(mutex_);
  kvcluster::v1::WorkerInfo info_ ABSL_GUARDED_BY(mutex_);
  kvcluster::v1::WorkerLoad load_ ABSL_GUARDED_BY(mutex_);
  grpc::ClientContext* stream_context_ ABSL_GUARDED_BY(mutex_) = nullptr;
  absl::Time last_message_ ABSL_GUARDED_BY(mutex_) = absl::InfinitePast();
};

// Registered workers sorted by address.
using WorkerList = std::vector<std::shared_ptr<WorkerLink>>;

class WorkerPool {
 public:
  // REQUIRES: `loop` outlives the pool.
  WorkerPool(const RouterConfig& config, kvindex::PrefixIndex* index, GrpcLoop* loop);
  ~WorkerPool();  // Stop()

  // Stops every link's thread, the load poller and the resolver; the links stay listed (calls
  // in flight still refer to them) but get no events any more. Idempotent.
  void Stop();

  // Adds a worker by "host:port" ("[v6addr]:port" for IPv6). INVALID_ARGUMENT for a malformed
  // address, ALREADY_EXISTS when present, RESOURCE_EXHAUSTED past the index's worker limit.
  // An address that cannot be reached is accepted and reported unhealthy.
  absl::StatusOr<std::shared_ptr<WorkerLink>> Add(const std::string& address,
                                                  kvcluster::v1::WorkerSource source);
  // NOT_FOUND when absent.
  absl::Status Remove(const std::string& address);

  // Follows `name:port`, adding and removing workers as the name's addresses change.
  absl::Status FollowDns(const std::string& name_and_port);

  // Every registered worker, ready or not, as an immutable list that Add and Remove replace:
  // the routing path takes the whole list with one reference count rather than one per worker,
  // and the list keeps its links alive for as long as a decision refers to them.
  std::shared_ptr<const WorkerList> Snapshot() const;
  WorkerList Ready() const;
  WorkerList All() const;
  std::shared_ptr<WorkerLink> Find(const std::string& address) const;

  GrpcLoop* loop() const { return loop_; }

 private:
  void PollLoop();
  void DnsLoop(std::string host, std::string port);

  const RouterConfig config_;
  kvindex::PrefixIndex* const index_;
  GrpcLoop* const loop_;
  absl::Notification stopping_;
  std::thread poller_;
  std::thread resolver_;

  mutable absl::Mutex mutex_;
  absl::flat_hash_map<std::string, std::shared_ptr<WorkerLink>> workers_ ABSL_GUARDED_BY(mutex_);
  // The same workers sorted by address, so that snapshots need no sorting.
  std::shared_ptr<const WorkerList> ordered_ ABSL_GUARDED_BY(mutex_) =
      std::make_shared<const WorkerList>();
  std::vector<kvindex::WorkerId> free_ids_ ABSL_GUARDED_BY(mutex_);
  kvindex::WorkerId next_id_ ABSL_GUARDED_BY(mutex_) = 0;
};

// Splits "host:port" / "[v6]:port"; INVALID_ARGUMENT naming what is wrong.
absl::Status ParseHostPort(const std::string& address, std::string* host, std::string* port);

}  // namespace kvc::router

#endif  // KVCLUSTER_ROUTER_WORKER_POOL_H_
