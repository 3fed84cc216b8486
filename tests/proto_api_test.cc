// The API contract over a real gRPC connection on loopback: messages survive the wire
// bit-for-bit (fixed64 hashes, optional fields, oneofs), and the standard health service
// answers on a server built the way kvc-router and kvc-worker build theirs.
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <gtest/gtest.h>

#include <memory>

#include "common/block_hash.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "kvcluster/v1/kvcluster.grpc.pb.h"

namespace kvc {
namespace {

namespace pb = ::kvcluster::v1;

// Answers GetInfo with a fixed description and streams a fixed event sequence, so the test
// checks what crosses the wire, not any server logic.
class FixedWorker final : public pb::Worker::Service {
 public:
  grpc::Status GetInfo(grpc::ServerContext*, const pb::GetInfoRequest*,
                       pb::WorkerInfo* info) override {
    info->set_worker_id("w0");
    info->mutable_hash()->set_block_size(kDefaultBlockSize);
    info->mutable_hash()->set_seed(kDefaultHashSeed);
    info->mutable_hash()->set_model_identity("kvcluster/test-model");
    info->mutable_hash()->set_scheme(std::string(kHashScheme));
    info->set_epoch(0xfedcba9876543210ull);
    info->set_capacity_blocks(4096);
    return grpc::Status::OK;
  }

  grpc::Status SubscribeKvEvents(grpc::ServerContext*, const pb::SubscribeKvEventsRequest* request,
                                 grpc::ServerWriter<pb::KvEventMessage>* writer) override {
    if (!request->has_from_seq()) {
      pb::KvEventMessage snapshot;
      snapshot.mutable_snapshot()->set_as_of_seq(0);
      snapshot.mutable_snapshot()->set_last(true);
      writer->Write(snapshot);
    }
    pb::KvEventMessage message;
    pb::KvEventBatch* batch = message.mutable_batch();
    batch->set_epoch(0xfedcba9876543210ull);
    batch->set_first_seq(request->has_from_seq() ? request->from_seq() : 1);
    pb::BlockStored* stored = batch->add_events()->mutable_stored();
    stored->set_parent_seq_hash(0xffffffffffffffffull);
    pb::KvBlock* block = stored->add_blocks();
    block->set_seq_hash(0x8000000000000001ull);
    block->set_local_hash(1);
    block->set_num_tokens(16);
    batch->add_events()->mutable_removed()->add_seq_hashes(0x8000000000000001ull);
    batch->add_events()->mutable_cleared();
    writer->Write(message);
    return grpc::Status::OK;
  }
};

class ProtoApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::EnableDefaultHealthCheckService(true);
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(port, 0);
    channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                                   grpc::InsecureChannelCredentials());
  }
  void TearDown() override { server_->Shutdown(); }

  FixedWorker service_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
};

TEST_F(ProtoApiTest, GetInfoCarriesTheHashingContract) {
  auto stub = pb::Worker::NewStub(channel_);
  grpc::ClientContext context;
  pb::WorkerInfo info;
  ASSERT_TRUE(stub->GetInfo(&context, pb::GetInfoRequest(), &info).ok());
  EXPECT_EQ(info.hash().block_size(), kDefaultBlockSize);
  EXPECT_EQ(info.hash().seed(), kDefaultHashSeed);
  EXPECT_EQ(info.hash().scheme(), kHashScheme);
  EXPECT_EQ(info.epoch(), 0xfedcba9876543210ull);
}

TEST_F(ProtoApiTest, EventStreamKeepsHashesAndOptionalParents) {
  auto stub = pb::Worker::NewStub(channel_);
  for (bool resume : {false, true}) {
    grpc::ClientContext context;
    pb::SubscribeKvEventsRequest request;
    if (resume) request.set_from_seq(17);
    auto reader = stub->SubscribeKvEvents(&context, request);
    std::vector<pb::KvEventMessage> messages;
    pb::KvEventMessage message;
    while (reader->Read(&message)) messages.push_back(message);
    ASSERT_TRUE(reader->Finish().ok());
    ASSERT_EQ(messages.size(), resume ? 1u : 2u);
    if (!resume) {
      EXPECT_TRUE(messages[0].has_snapshot());
    }
    const pb::KvEventBatch& batch = messages.back().batch();
    EXPECT_EQ(batch.first_seq(), resume ? 17u : 1u);
    ASSERT_EQ(batch.events_size(), 3);
    ASSERT_TRUE(batch.events(0).stored().has_parent_seq_hash());
    EXPECT_EQ(batch.events(0).stored().parent_seq_hash(), 0xffffffffffffffffull);
    EXPECT_EQ(batch.events(0).stored().blocks(0).seq_hash(), 0x8000000000000001ull);
    EXPECT_EQ(batch.events(1).removed().seq_hashes(0), 0x8000000000000001ull);
    EXPECT_TRUE(batch.events(2).has_cleared());
  }
}

TEST_F(ProtoApiTest, StandardHealthServiceAnswers) {
  auto stub = grpc::health::v1::Health::NewStub(channel_);
  grpc::ClientContext context;
  grpc::health::v1::HealthCheckRequest request;
  grpc::health::v1::HealthCheckResponse response;
  ASSERT_TRUE(stub->Check(&context, request, &response).ok());
  EXPECT_EQ(response.status(), grpc::health::v1::HealthCheckResponse::SERVING);
}

TEST(ProtoMessagesTest, StoredWithoutParentIsDistinguishable) {
  pb::BlockStored first_block;
  first_block.add_blocks()->set_seq_hash(1);
  pb::BlockStored parsed;
  ASSERT_TRUE(parsed.ParseFromString(first_block.SerializeAsString()));
  EXPECT_FALSE(parsed.has_parent_seq_hash());
  pb::BlockStored zero_parent;
  zero_parent.set_parent_seq_hash(0);
  ASSERT_TRUE(parsed.ParseFromString(zero_parent.SerializeAsString()));
  EXPECT_TRUE(parsed.has_parent_seq_hash());
}

}  // namespace
}  // namespace kvc
