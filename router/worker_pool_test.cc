// The router's event-stream handling against a scripted worker: a gap, a digest mismatch, a
// lost stream and a restart (new epoch) must each be detected, counted and repaired, leaving
// the index equal to what the worker last said it holds.
#include "router/worker_pool.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <thread>

#include "absl/synchronization/mutex.h"
#include "common/block_hash.h"
#include "kvindex/prefix_index.h"

namespace kvc::router {
namespace {

namespace pb = ::kvcluster::v1;

constexpr uint64_t kA = 0x1111, kB = 0x2222;

pb::KvEventMessage Snapshot(uint64_t epoch, uint64_t as_of, std::vector<uint64_t> chain) {
  pb::KvEventMessage m;
  pb::KvSnapshotChunk* chunk = m.mutable_snapshot();
  chunk->set_epoch(epoch);
  chunk->set_as_of_seq(as_of);
  chunk->set_last(true);
  chunk->set_num_blocks(chain.size());
  if (!chain.empty()) {
    pb::BlockStored* stored = chunk->add_stored();
    for (uint64_t h : chain) stored->add_blocks()->set_seq_hash(h);
  }
  return m;
}

pb::KvEventMessage Heartbeat(uint64_t epoch, uint64_t last_seq, std::vector<uint64_t> blocks) {
  pb::KvEventMessage m;
  BlockSetDigest digest;
  for (uint64_t h : blocks) digest.Add(h);
  m.mutable_heartbeat()->set_epoch(epoch);
  m.mutable_heartbeat()->set_last_seq(last_seq);
  m.mutable_heartbeat()->set_num_blocks(digest.num_blocks);
  m.mutable_heartbeat()->set_digest(digest.digest);
  return m;
}

pb::KvEventMessage StoredBatch(uint64_t epoch, uint64_t first_seq, std::vector<uint64_t> chain) {
  pb::KvEventMessage m;
  m.mutable_batch()->set_epoch(epoch);
  m.mutable_batch()->set_first_seq(first_seq);
  pb::BlockStored* stored = m.mutable_batch()->add_events()->mutable_stored();
  for (uint64_t h : chain) stored->add_blocks()->set_seq_hash(h);
  return m;
}

// Plays one script per subscription, in order, and records what each subscription asked.
class ScriptedWorker final : public pb::Worker::Service {
 public:
  grpc::Status GetInfo(grpc::ServerContext*, const pb::GetInfoRequest*,
                       pb::WorkerInfo* info) override {
    info->set_worker_id("scripted");
    info->mutable_hash()->set_block_size(kDefaultBlockSize);
    info->mutable_hash()->set_seed(kDefaultHashSeed);
    info->mutable_hash()->set_model_identity("m");
    info->mutable_hash()->set_scheme(std::string(kHashScheme));
    return grpc::Status::OK;
  }

  grpc::Status SubscribeKvEvents(grpc::ServerContext* context,
                                 const pb::SubscribeKvEventsRequest* request,
                                 grpc::ServerWriter<pb::KvEventMessage>* writer) override {
    int call;
    {
      absl::MutexLock lock(&mutex_);
      call = static_cast<int>(requests_.size());
      requests_.push_back(*request);
    }
    std::vector<pb::KvEventMessage> script;
    bool hold = false;
    switch (call) {
      case 0:  // a gap: seq 2 never comes
        script = {Snapshot(1, 0, {}), StoredBatch(1, 1, {kA, kB}), Heartbeat(1, 1, {kA, kB}),
                  StoredBatch(1, 3, {0x3333})};
        hold = true;
        break;
      case 1:  // a heartbeat that disagrees with the snapshot
        script = {Snapshot(1, 5, {kA, kB}), Heartbeat(1, 5, {kA})};
        hold = true;
        break;
      case 2:  // consistent, then the stream drops
        script = {Snapshot(1, 5, {kA, kB}), Heartbeat(1, 5, {kA, kB})};
        break;
      default:  // the worker restarted: a new epoch holding only A
        script = {Snapshot(2, 0, {kA}), Heartbeat(2, 0, {kA})};
        hold = true;
        break;
    }
    for (const auto& m : script) {
      if (!writer->Write(m)) return grpc::Status::OK;
    }
    while (hold && !context->IsCancelled()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      if (call >= 3 && !writer->Write(Heartbeat(2, 0, {kA}))) break;
    }
    return grpc::Status::OK;
  }

  std::vector<pb::SubscribeKvEventsRequest> requests() {
    absl::MutexLock lock(&mutex_);
    return requests_;
  }

 private:
  absl::Mutex mutex_;
  std::vector<pb::SubscribeKvEventsRequest> requests_;
};

TEST(WorkerPoolTest, DetectsAndRepairsGapsMismatchesLossAndRestarts) {
  ScriptedWorker worker;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&worker);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);

  RouterConfig config;
  config.model_identity = "m";
  config.reconnect_min = absl::Milliseconds(10);
  config.reconnect_max = absl::Milliseconds(50);
  std::unique_ptr<kvindex::PrefixIndex> index = kvindex::NewPrefixIndex();
  GrpcLoop loop(std::make_unique<grpc::CompletionQueue>());
  WorkerPool pool(config, index.get(), &loop);
  auto link = pool.Add("127.0.0.1:" + std::to_string(port), pb::WORKER_SOURCE_STATIC);
  ASSERT_TRUE(link.ok());

  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (absl::Now() < deadline && (*link)->counters().epoch_changes.load() == 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const WorkerCounters& counters = (*link)->counters();
  EXPECT_EQ(counters.event_gaps.load(), 1u);
  EXPECT_EQ(counters.digest_mismatches.load(), 1u);
  EXPECT_EQ(counters.resyncs.load(), 2u);
  EXPECT_EQ(counters.epoch_changes.load(), 1u);
  EXPECT_TRUE((*link)->ready());

  const auto requests = worker.requests();
  ASSERT_GE(requests.size(), 4u);
  EXPECT_FALSE(requests[0].has_from_seq());
  EXPECT_FALSE(requests[1].has_from_seq());  // a resync asks for a snapshot
  EXPECT_FALSE(requests[2].has_from_seq());
  ASSERT_TRUE(requests[3].has_from_seq());  // a lost stream resumes where it stopped
  EXPECT_EQ(requests[3].from_seq(), 6u);
  EXPECT_EQ(requests[3].epoch(), 1u);

  // The index now holds what the restarted worker holds: A only.
  const kvindex::WorkerSummary summary = index->GetWorkerSummary((*link)->index_id());
  EXPECT_EQ(summary.blocks.num_blocks, 1u);
  EXPECT_EQ(summary.blocks.digest, kA);
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(100));
  pool.Stop();
  loop.Shutdown();
}

}  // namespace
}  // namespace kvc::router
