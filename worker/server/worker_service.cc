#include "worker/server/worker_service.h"

#include <algorithm>
#include <utility>

#include "worker/server/generate_call.h"

namespace kvc::server {

namespace pb = ::kvcluster::v1;

namespace {

void ToProto(const engine::StoredEvent& stored, pb::BlockStored* out) {
  if (stored.parent) out->set_parent_seq_hash(*stored.parent);
  for (const engine::StoredBlock& block : stored.blocks) {
    pb::KvBlock* b = out->add_blocks();
    b->set_seq_hash(block.seq_hash);
    b->set_local_hash(block.local_hash);
    b->set_num_tokens(block.num_tokens);
  }
}

void ToProto(const engine::KvEvent& event, pb::KvEvent* out) {
  if (const auto* stored = std::get_if<engine::StoredEvent>(&event)) {
    ToProto(*stored, out->mutable_stored());
  } else if (const auto* removed = std::get_if<engine::RemovedEvent>(&event)) {
    for (uint64_t hash : removed->seq_hashes) out->mutable_removed()->add_seq_hashes(hash);
  } else {
    out->mutable_cleared();
  }
}

}  // namespace

WorkerService::WorkerService(EngineLoop* loop, EventHub* hub, const Tokenizer* tokenizer,
                             const WorkerServiceOptions& options)
    : loop_(loop),
      hub_(hub),
      tokenizer_(tokenizer),
      options_(options),
      worker_id_(options.worker_id) {}

void WorkerService::SetWorkerId(std::string worker_id) {
  absl::MutexLock lock(&mutex_);
  worker_id_ = std::move(worker_id);
}

std::string WorkerService::worker_id() const {
  absl::MutexLock lock(&mutex_);
  return worker_id_;
}

grpc::ServerWriteReactor<pb::GenerateResponse>* WorkerService::Generate(
    grpc::CallbackServerContext*, const pb::GenerateRequest* request) {
  if (!accepting_) {
    class Refused final : public grpc::ServerWriteReactor<pb::GenerateResponse> {
     public:
      Refused() {
        Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "the worker is shutting down"));
      }
      void OnDone() override { delete this; }
    };
    return new Refused();
  }
  return new GenerateCall(this, *request);
}

grpc::Status WorkerService::SubscribeKvEvents(grpc::ServerContext* context,
                                              const pb::SubscribeKvEventsRequest* request,
                                              grpc::ServerWriter<pb::KvEventMessage>* writer) {
  const uint64_t epoch = hub_->epoch();
  const std::string worker_id = this->worker_id();
  // Resume from the subscriber's seq when it belongs to this epoch and is still buffered;
  // otherwise (and whenever the subscriber falls behind the buffer) start from a snapshot.
  bool need_snapshot = !request->has_from_seq() || request->epoch() != epoch;
  uint64_t next_seq = need_snapshot ? 0 : request->from_seq();
  absl::Time next_heartbeat = absl::Now();
  while (!context->IsCancelled()) {
    if (need_snapshot) {
      const EngineLoop::Snapshot snapshot = loop_->TakeSnapshot();
      size_t run = 0;
      do {
        pb::KvEventMessage message;
        pb::KvSnapshotChunk* chunk = message.mutable_snapshot();
        chunk->set_worker_id(worker_id);
        chunk->set_epoch(epoch);
        chunk->set_as_of_seq(snapshot.as_of_seq);
        chunk->set_num_blocks(snapshot.num_blocks);
        int blocks = 0;
        while (run < snapshot.runs.size() && blocks < options_.snapshot_chunk_blocks) {
          ToProto(snapshot.runs[run], chunk->add_stored());
          blocks += static_cast<int>(snapshot.runs[run].blocks.size());
          ++run;
        }
        chunk->set_last(run == snapshot.runs.size());
        if (!writer->Write(message)) return grpc::Status::OK;
      } while (run < snapshot.runs.size());
      next_seq = snapshot.as_of_seq + 1;
      need_snapshot = false;
      next_heartbeat = absl::Now();
    }
    const absl::Duration wait =
        std::clamp(next_heartbeat - absl::Now(), absl::ZeroDuration(), absl::Milliseconds(200));
    EventHub::Update update = hub_->WaitSince(next_seq, wait);
    if (update.closed) break;
    if (update.gone) {
      need_snapshot = true;
      continue;
    }
    for (size_t i = 0; i < update.events.size();) {
      pb::KvEventMessage message;
      pb::KvEventBatch* batch = message.mutable_batch();
      batch->set_worker_id(worker_id);
      batch->set_epoch(epoch);
      batch->set_first_seq(update.events[i].seq);
      batch->set_unix_time_ms(update.events[i].unix_time_ms);
      const size_t end =
          std::min(update.events.size(), i + static_cast<size_t>(options_.max_events_per_batch));
      for (; i < end; ++i) ToProto(update.events[i].event, batch->add_events());
      if (!writer->Write(message)) return grpc::Status::OK;
    }
    if (!update.events.empty()) next_seq = update.events.back().seq + 1;
    if (absl::Now() >= next_heartbeat && update.state.last_seq + 1 == next_seq) {
      pb::KvEventMessage message;
      pb::KvHeartbeat* heartbeat = message.mutable_heartbeat();
      heartbeat->set_worker_id(worker_id);
      heartbeat->set_epoch(epoch);
      heartbeat->set_last_seq(update.state.last_seq);
      heartbeat->set_num_blocks(update.state.digest.num_blocks);
      heartbeat->set_digest(update.state.digest.digest);
      heartbeat->set_unix_time_ms(absl::ToUnixMillis(absl::Now()));
      if (!writer->Write(message)) return grpc::Status::OK;
      next_heartbeat = absl::Now() + options_.heartbeat_interval;
    }
  }
  return grpc::Status::OK;
}

grpc::Status WorkerService::GetInfo(grpc::ServerContext*, const pb::GetInfoRequest*,
                                    pb::WorkerInfo* info) {
  const backend::Backend& backend = loop_->backend();
  info->set_worker_id(worker_id());
  info->mutable_hash()->set_block_size(options_.hash.block_size);
  info->mutable_hash()->set_seed(options_.hash.seed);
  info->mutable_hash()->set_model_identity(options_.model_identity);
  info->mutable_hash()->set_scheme(std::string(kHashScheme));
  info->set_model_name(options_.model_name);
  info->set_backend(options_.backend_name);
  info->set_capacity_blocks(backend.kv_cache_options().num_blocks);
  info->set_max_context_tokens(loop_->max_context_tokens());
  info->set_vocab_size(backend.config().vocab_size);
  info->set_epoch(hub_->epoch());
  info->set_kv_bytes_per_token(backend.config().KvBytesPerToken(backend.kv_cache_options().dtype));
  info->set_version("kvcluster 0.1.0");
  return grpc::Status::OK;
}

grpc::Status WorkerService::GetLoad(grpc::ServerContext*, const pb::GetLoadRequest*,
                                    pb::WorkerLoad* load) {
  const engine::EngineLoad current = loop_->Load();
  load->set_running_requests(current.running_requests);
  load->set_waiting_requests(current.waiting_requests);
  load->set_used_blocks(current.used_blocks);
  load->set_free_blocks(current.free_blocks);
  load->set_cached_blocks(current.cached_blocks);
  load->set_tokens_in_flight(current.tokens_in_flight);
  return grpc::Status::OK;
}

}  // namespace kvc::server
