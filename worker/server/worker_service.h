// The Worker gRPC service (proto/kvcluster/v1): Generate streams a request's tokens from the
// engine; SubscribeKvEvents streams KV events with replay, snapshots and heartbeats; GetInfo
// and GetLoad describe the worker. Generate uses gRPC's callback API, so concurrent streams
// cost no threads; event subscriptions (one per router) use a sync handler each.
//
// Thread-safety: thread-safe; gRPC calls it from its own threads.
#ifndef KVCLUSTER_WORKER_SERVER_WORKER_SERVICE_H_
#define KVCLUSTER_WORKER_SERVER_WORKER_SERVICE_H_

#include <atomic>
#include <cstdint>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/block_hash.h"
#include "common/tokenizer/tokenizer.h"
#include "kvcluster/v1/kvcluster.grpc.pb.h"
#include "worker/server/engine_loop.h"
#include "worker/server/event_hub.h"

namespace kvc::server {

struct WorkerServiceOptions {
  // Initial worker id (see WorkerService::SetWorkerId).
  std::string worker_id;
  std::string model_name;
  // Mixed into every block hash's salt; must match the router's.
  std::string model_identity;
  std::string backend_name;
  HashConfig hash;
  // How often an idle event stream carries a heartbeat.
  absl::Duration heartbeat_interval = absl::Seconds(1);
  // Events per KvEventBatch message, and blocks per snapshot chunk.
  int max_events_per_batch = 512;
  int snapshot_chunk_blocks = 4096;
  // Longest text prompt accepted, in bytes (token prompts are bounded by the context).
  int64_t max_prompt_bytes = 4 << 20;
  // Stop strings per request, and the longest one.
  int max_stop_strings = 16;
  int max_stop_string_bytes = 256;
};

class WorkerService final
    : public kvcluster::v1::Worker::WithCallbackMethod_Generate<kvcluster::v1::Worker::Service> {
 public:
  // `tokenizer` may be null: text prompts are then refused and responses carry no text.
  // REQUIRES: loop, hub and tokenizer outlive the service.
  WorkerService(EngineLoop* loop, EventHub* hub, const Tokenizer* tokenizer,
                const WorkerServiceOptions& options);

  grpc::ServerWriteReactor<kvcluster::v1::GenerateResponse>* Generate(
      grpc::CallbackServerContext* context, const kvcluster::v1::GenerateRequest* request) override;

  grpc::Status SubscribeKvEvents(
      grpc::ServerContext* context, const kvcluster::v1::SubscribeKvEventsRequest* request,
      grpc::ServerWriter<kvcluster::v1::KvEventMessage>* writer) override;

  grpc::Status GetInfo(grpc::ServerContext* context, const kvcluster::v1::GetInfoRequest* request,
                       kvcluster::v1::WorkerInfo* info) override;

  grpc::Status GetLoad(grpc::ServerContext* context, const kvcluster::v1::GetLoadRequest* request,
                       kvcluster::v1::WorkerLoad* load) override;

  // The id reported in events, info and results; set once the listening port is known.
  void SetWorkerId(std::string worker_id) ABSL_LOCKS_EXCLUDED(mutex_);
  std::string worker_id() const ABSL_LOCKS_EXCLUDED(mutex_);

  // Makes new Generate calls fail with UNAVAILABLE (graceful shutdown).
  void StopAccepting() { accepting_ = false; }

  const WorkerServiceOptions& options() const { return options_; }
  EngineLoop* loop() const { return loop_; }
  const Tokenizer* tokenizer() const { return tokenizer_; }
  uint64_t NextRequestId() { return next_request_id_.fetch_add(1); }

 private:
  EngineLoop* const loop_;
  EventHub* const hub_;
  const Tokenizer* const tokenizer_;
  const WorkerServiceOptions options_;
  std::atomic<bool> accepting_{true};
  std::atomic<uint64_t> next_request_id_{1};
  mutable absl::Mutex mutex_;
  std::string worker_id_ ABSL_GUARDED_BY(mutex_);
};

}  // namespace kvc::server

#endif  // KVCLUSTER_WORKER_SERVER_WORKER_SERVICE_H_
