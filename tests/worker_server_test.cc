// kvc-worker for real: the program runs on a generated tiny model on loopback, and the tests
// talk to it over gRPC as the router and clients would. Every WorkerServerTest case runs
// against the cpu backend and against the sim backend (same engine, cache, events and
// streams; synthetic tokens); SimWorkerTest covers what only the sim has.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cctype>
#include <cmath>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "kvcluster/v1/kvcluster.grpc.pb.h"
#include "tests/util/process.h"
#include "worker/backend/sim/cost_model.h"
#include "worker/model/presets.h"

namespace kvc {
namespace {

namespace pb = ::kvcluster::v1;
using testing::BinDir;

struct Generation {
  grpc::Status status;
  std::vector<uint32_t> tokens;
  std::string text;
  pb::GenerateResult result;
  int chunks = 0;
};

pb::GenerateRequest TokenRequest(const std::vector<uint32_t>& prompt, int max_tokens) {
  pb::GenerateRequest request;
  for (uint32_t id : prompt) request.mutable_token_ids()->add_ids(id);
  request.mutable_sampling()->set_max_tokens(max_tokens);
  request.mutable_sampling()->set_ignore_eos(true);
  return request;
}

std::vector<uint32_t> Prompt(uint32_t first, int n) {
  std::vector<uint32_t> ids(n);
  for (int i = 0; i < n; ++i) ids[i] = (first + 37 * i) % 500;
  return ids;
}

// The set of cached blocks that a stream of event messages describes, checked against the
// heartbeats in it.
struct EventMirror {
  std::set<uint64_t> blocks;
  uint64_t epoch = 0;
  uint64_t next_seq = 0;
  int snapshots = 0;
  int batches = 0;
  int heartbeats_checked = 0;
  std::vector<std::string> errors;

  void Apply(const pb::KvEventMessage& message) {
    if (message.has_snapshot()) {
      if (snapshot_open_ == false) {
        blocks.clear();
        snapshot_open_ = true;
      }
      for (const pb::BlockStored& stored : message.snapshot().stored()) {
        if (stored.has_parent_seq_hash() && !blocks.contains(stored.parent_seq_hash())) {
          errors.push_back("snapshot lists a child before its parent");
        }
        for (const pb::KvBlock& b : stored.blocks()) blocks.insert(b.seq_hash());
      }
      if (message.snapshot().last()) {
        snapshot_open_ = false;
        ++snapshots;
        epoch = message.snapshot().epoch();
        next_seq = message.snapshot().as_of_seq() + 1;
        if (blocks.size() != message.snapshot().num_blocks()) errors.push_back("snapshot size");
      }
    } else if (message.has_batch()) {
      ++batches;
      if (message.batch().first_seq() != next_seq) {
        errors.push_back(
            absl::StrCat("gap: expected seq ", next_seq, ", got ", message.batch().first_seq()));
      }
      for (const pb::KvEvent& event : message.batch().events()) {
        if (event.has_stored()) {
          if (event.stored().has_parent_seq_hash() &&
              !blocks.contains(event.stored().parent_seq_hash())) {
            errors.push_back("stored under an unknown parent");
          }
          for (const pb::KvBlock& b : event.stored().blocks()) blocks.insert(b.seq_hash());
        } else if (event.has_removed()) {
          for (uint64_t h : event.removed().seq_hashes()) {
            if (blocks.erase(h) == 0) errors.push_back("removed an unknown block");
          }
        } else {
          blocks.clear();
        }
        ++next_seq;
      }
    } else if (message.has_heartbeat()) {
      const pb::KvHeartbeat& hb = message.heartbeat();
      if (hb.last_seq() + 1 != next_seq) {
        errors.push_back("heartbeat ahead of the events sent");
        return;
      }
      uint64_t digest = 0;
      for (uint64_t h : blocks) digest += h;
      if (hb.num_blocks() != blocks.size() || hb.digest() != digest) {
        errors.push_back(absl::StrCat("heartbeat mismatch at seq ", hb.last_seq(), ": ",
                                      hb.num_blocks(), " blocks vs ", blocks.size()));
      }
      ++heartbeats_checked;
      last_heartbeat_seq = hb.last_seq();
    }
  }
  uint64_t last_heartbeat_seq = 0;

 private:
  bool snapshot_open_ = false;
};

// The worker each backend's cases share, started by the first of them.
struct SharedWorker {
  testing::Process process;
  std::string address;
};

// Parameter: the backend, "cpu" or "sim".
class WorkerServerTest : public ::testing::TestWithParam<std::string> {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir();
    workers_ = new std::map<std::string, SharedWorker>();
    const std::string model = dir_->path() + "/tiny";
    auto made = testing::Run({BinDir() + "/kvc-make-model", "--out", model, "--preset", "tiny"},
                             dir_->path() + "/make-model.log");
    ASSERT_TRUE(made.ok() && *made == 0) << testing::ReadFile(dir_->path() + "/make-model.log");
  }

  static void TearDownTestSuite() {
    delete workers_;
    delete dir_;
  }

  void SetUp() override {
    ASSERT_NE(workers_, nullptr);
    const std::string backend = GetParam();
    if (!workers_->contains(backend)) {
      const std::string port_file = dir_->path() + "/port-" + backend;
      const std::string log = dir_->path() + "/worker-" + backend + ".log";
      auto process = testing::Process::Start(
          {BinDir() + "/kvc-worker", "--backend", backend, "--model", dir_->path() + "/tiny",
           "--listen", "127.0.0.1:0", "--port-file", port_file, "--kv-cache-memory", "256KiB",
           "--heartbeat-interval", "50ms", "--max-context", "1024", "--threads", "1",
           "--sim-speedup", "20"},
          log);
      ASSERT_TRUE(process.ok()) << process.status();
      auto port = testing::WaitForPortFile(port_file, &*process);
      ASSERT_TRUE(port.ok()) << port.status() << testing::ReadFile(log);
      (*workers_)[backend] = SharedWorker{std::move(*process), absl::StrCat("127.0.0.1:", *port)};
    }
    channel_ =
        grpc::CreateChannel(workers_->at(backend).address, grpc::InsecureChannelCredentials());
    stub_ = pb::Worker::NewStub(channel_);
  }

  Generation Generate(const pb::GenerateRequest& request) {
    Generation out;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    auto reader = stub_->Generate(&context, request);
    pb::GenerateResponse response;
    while (reader->Read(&response)) {
      if (response.has_chunk()) {
        ++out.chunks;
        out.tokens.insert(out.tokens.end(), response.chunk().token_ids().begin(),
                          response.chunk().token_ids().end());
        out.text += response.chunk().text();
      }
      if (response.has_result()) out.result = response.result();
    }
    out.status = reader->Finish();
    return out;
  }

  static testing::TempDir* dir_;
  static std::map<std::string, SharedWorker>* workers_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<pb::Worker::Stub> stub_;
};

testing::TempDir* WorkerServerTest::dir_ = nullptr;
std::map<std::string, SharedWorker>* WorkerServerTest::workers_ = nullptr;

TEST_P(WorkerServerTest, StreamsTokensThenUsage) {
  const Generation g = Generate(TokenRequest(Prompt(1, 20), 8));
  ASSERT_TRUE(g.status.ok()) << g.status.error_message();
  EXPECT_EQ(g.tokens.size(), 8u);
  EXPECT_GE(g.chunks, 1);
  EXPECT_EQ(g.result.finish_reason(), pb::FINISH_REASON_LENGTH);
  EXPECT_EQ(g.result.usage().prompt_tokens(), 20u);
  EXPECT_EQ(g.result.usage().completion_tokens(), 8u);
  EXPECT_FALSE(g.result.worker_id().empty());
  EXPECT_GT(g.result.timings().time_to_first_token_ms(), 0);
}

TEST_P(WorkerServerTest, LogprobsComeWithEveryTokenWhenAsked) {
  pb::GenerateRequest request = TokenRequest(Prompt(5, 20), 6);
  request.mutable_sampling()->set_logprobs(true);
  grpc::ClientContext context;
  auto reader = stub_->Generate(&context, request);
  pb::GenerateResponse response;
  int tokens = 0;
  std::vector<float> logprobs;
  while (reader->Read(&response)) {
    if (!response.has_chunk()) continue;
    tokens += response.chunk().token_ids_size();
    logprobs.insert(logprobs.end(), response.chunk().logprobs().begin(),
                    response.chunk().logprobs().end());
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(tokens, 6);
  ASSERT_EQ(logprobs.size(), 6u);
  for (float lp : logprobs) {
    EXPECT_LE(lp, 0.0f);
    EXPECT_GT(lp, -100.0f);
    // The sim's tokens are uniform over the 511 non-EOS ids of the tiny vocabulary.
    if (GetParam() == "sim") {
      EXPECT_FLOAT_EQ(lp, -std::log(511.0f));
    }
  }
  // Without the flag, none.
  const Generation plain = Generate(TokenRequest(Prompt(5, 20), 6));
  EXPECT_TRUE(plain.status.ok());
}

TEST_P(WorkerServerTest, TextPromptsAreTokenizedAndTextIsStreamed) {
  pb::GenerateRequest request;
  request.set_text("The quick brown fox jumps over the lazy dog.");
  request.mutable_sampling()->set_max_tokens(12);
  request.mutable_sampling()->set_ignore_eos(true);
  const Generation g = Generate(request);
  ASSERT_TRUE(g.status.ok()) << g.status.error_message();
  EXPECT_GT(g.result.usage().prompt_tokens(), 5u);
  EXPECT_EQ(g.tokens.size(), 12u);
}

TEST_P(WorkerServerTest, StopTokenEndsGenerationWithStop) {
  const Generation free_run = Generate(TokenRequest(Prompt(3, 24), 10));
  ASSERT_TRUE(free_run.status.ok());
  const uint32_t stop = free_run.tokens[4];
  size_t first = 0;
  while (free_run.tokens[first] != stop) ++first;
  pb::GenerateRequest request = TokenRequest(Prompt(3, 24), 10);
  request.mutable_sampling()->add_stop_token_ids(stop);
  const Generation stopped = Generate(request);
  ASSERT_TRUE(stopped.status.ok());
  EXPECT_EQ(stopped.result.finish_reason(), pb::FINISH_REASON_STOP);
  EXPECT_EQ(stopped.tokens,
            std::vector<uint32_t>(free_run.tokens.begin(), free_run.tokens.begin() + first + 1));
}

TEST_P(WorkerServerTest, StopStringCutsTheTextAndEndsWithStop) {
  pb::GenerateRequest request = TokenRequest(Prompt(9, 30), 40);
  const Generation free_run = Generate(request);
  ASSERT_TRUE(free_run.status.ok());
  // A stop string taken from the second half of the greedy text: two ASCII letters or digits.
  std::string stop;
  size_t at = std::string::npos;
  for (size_t i = free_run.text.size() / 2; i + 2 <= free_run.text.size(); ++i) {
    if (std::isalnum(static_cast<unsigned char>(free_run.text[i])) &&
        std::isalnum(static_cast<unsigned char>(free_run.text[i + 1]))) {
      stop = free_run.text.substr(i, 2);
      at = free_run.text.find(stop);
      break;
    }
  }
  ASSERT_FALSE(stop.empty()) << "no ASCII pair in: " << free_run.text;
  request.mutable_sampling()->add_stop(stop);
  const Generation stopped = Generate(request);
  ASSERT_TRUE(stopped.status.ok());
  EXPECT_EQ(stopped.result.finish_reason(), pb::FINISH_REASON_STOP);
  EXPECT_EQ(stopped.result.stop_reason(), stop);
  EXPECT_EQ(stopped.text, free_run.text.substr(0, at));
  EXPECT_LT(stopped.tokens.size(), free_run.tokens.size());
}

TEST_P(WorkerServerTest, RepeatedPromptHitsThePrefixCacheWithSameOutput) {
  const std::vector<uint32_t> prompt = Prompt(11, 64);  // exactly 4 blocks
  const Generation cold = Generate(TokenRequest(prompt, 16));
  const Generation warm = Generate(TokenRequest(prompt, 16));
  ASSERT_TRUE(cold.status.ok() && warm.status.ok());
  EXPECT_EQ(cold.result.usage().cached_prompt_tokens(), 0u);
  // The block holding the last prompt token is always recomputed.
  EXPECT_EQ(warm.result.usage().cached_prompt_tokens(), 48u);
  EXPECT_EQ(warm.tokens, cold.tokens);
}

TEST_P(WorkerServerTest, ConcurrentRequestsGiveTheSameTokensAsAlone) {
  std::vector<std::vector<uint32_t>> alone;
  for (int i = 0; i < 6; ++i) {
    const Generation g = Generate(TokenRequest(Prompt(100 + i, 10 + 13 * i), 12));
    ASSERT_TRUE(g.status.ok());
    alone.push_back(g.tokens);
  }
  std::vector<Generation> together(6);
  std::vector<std::thread> threads;
  for (int i = 0; i < 6; ++i) {
    threads.emplace_back(
        [&, i] { together[i] = Generate(TokenRequest(Prompt(100 + i, 10 + 13 * i), 12)); });
  }
  for (std::thread& t : threads) t.join();
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(together[i].status.ok());
    EXPECT_EQ(together[i].tokens, alone[i]) << "request " << i;
  }
}

TEST_P(WorkerServerTest, BadInputsGetPreciseCodesAndTheWorkerKeepsServing) {
  struct Case {
    const char* name;
    pb::GenerateRequest request;
    grpc::StatusCode code;
  };
  std::vector<Case> cases;
  cases.push_back({"no prompt", pb::GenerateRequest(), grpc::StatusCode::INVALID_ARGUMENT});
  cases.back().request.mutable_sampling()->set_max_tokens(4);
  cases.push_back({"empty prompt", TokenRequest({}, 4), grpc::StatusCode::INVALID_ARGUMENT});
  cases.push_back(
      {"unknown token", TokenRequest({1, 2, 9999}, 4), grpc::StatusCode::INVALID_ARGUMENT});
  cases.push_back({"max_tokens 0", TokenRequest({1, 2}, 0), grpc::StatusCode::INVALID_ARGUMENT});
  cases.push_back(
      {"beyond context", TokenRequest(Prompt(0, 1000), 100), grpc::StatusCode::INVALID_ARGUMENT});
  cases.push_back(
      {"negative temperature", TokenRequest({1, 2}, 4), grpc::StatusCode::INVALID_ARGUMENT});
  cases.back().request.mutable_sampling()->set_temperature(-1);
  cases.push_back({"top_p above 1", TokenRequest({1, 2}, 4), grpc::StatusCode::INVALID_ARGUMENT});
  cases.back().request.mutable_sampling()->set_top_p(1.5);
  cases.push_back(
      {"empty stop string", TokenRequest({1, 2}, 4), grpc::StatusCode::INVALID_ARGUMENT});
  cases.back().request.mutable_sampling()->add_stop("");
  cases.push_back({"lora", TokenRequest({1, 2}, 4), grpc::StatusCode::INVALID_ARGUMENT});
  cases.back().request.set_lora_name("adapter");
  pb::GenerateRequest huge;
  huge.set_text(std::string(5 << 20, 'a'));
  huge.mutable_sampling()->set_max_tokens(1);
  cases.push_back({"oversized text", huge, grpc::StatusCode::RESOURCE_EXHAUSTED});
  for (const Case& c : cases) {
    const Generation g = Generate(c.request);
    EXPECT_EQ(g.status.error_code(), c.code) << c.name << ": " << g.status.error_message();
    EXPECT_FALSE(g.status.error_message().empty()) << c.name;
  }
  EXPECT_TRUE(Generate(TokenRequest({1, 2, 3}, 2)).status.ok());
}

TEST_P(WorkerServerTest, CancelledClientFreesItsRequest) {
  grpc::ClientContext context;
  auto reader = stub_->Generate(&context, TokenRequest(Prompt(7, 30), 900));
  pb::GenerateResponse response;
  ASSERT_TRUE(reader->Read(&response));
  context.TryCancel();
  while (reader->Read(&response)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  pb::WorkerLoad load;
  do {
    grpc::ClientContext load_context;
    ASSERT_TRUE(stub_->GetLoad(&load_context, pb::GetLoadRequest(), &load).ok());
  } while (load.running_requests() + load.waiting_requests() > 0 && absl::Now() < deadline);
  EXPECT_EQ(load.running_requests() + load.waiting_requests(), 0u);
}

TEST_P(WorkerServerTest, InfoLoadAndHealth) {
  grpc::ClientContext context;
  pb::WorkerInfo info;
  ASSERT_TRUE(stub_->GetInfo(&context, pb::GetInfoRequest(), &info).ok());
  EXPECT_EQ(info.hash().block_size(), 16u);
  EXPECT_EQ(info.hash().seed(), 1337u);
  EXPECT_EQ(info.hash().model_identity(), "tiny");
  EXPECT_EQ(info.vocab_size(), 512u);
  EXPECT_EQ(info.max_context_tokens(), 1024u);
  EXPECT_EQ(info.capacity_blocks(), 64u);  // 256 KiB / (16 tokens x 256 B)
  EXPECT_EQ(info.backend(), GetParam());
  EXPECT_NE(info.epoch(), 0u);
  auto health = grpc::health::v1::Health::NewStub(channel_);
  grpc::ClientContext health_context;
  grpc::health::v1::HealthCheckResponse status;
  ASSERT_TRUE(health->Check(&health_context, {}, &status).ok());
  EXPECT_EQ(status.status(), grpc::health::v1::HealthCheckResponse::SERVING);
}

// Reads a subscription on its own thread until told to stop.
class Subscriber {
 public:
  // `mirror` is what the subscriber already knows (for resuming from a seq).
  Subscriber(pb::Worker::Stub* stub, const pb::SubscribeKvEventsRequest& request,
             EventMirror mirror = {})
      : reader_(stub->SubscribeKvEvents(&context_, request)),
        mirror_(std::move(mirror)),
        thread_([this] { Loop(); }) {}
  ~Subscriber() { Stop(); }

  void Stop() {
    context_.TryCancel();
    if (thread_.joinable()) thread_.join();
  }
  // Waits until a heartbeat at or past `seq` was checked.
  bool WaitForHeartbeat(uint64_t seq) {
    const absl::Time deadline = absl::Now() + absl::Seconds(20);
    while (absl::Now() < deadline) {
      {
        absl::MutexLock lock(&mutex_);
        if (mirror_.heartbeats_checked > 0 && mirror_.last_heartbeat_seq >= seq) return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }
  EventMirror mirror() {
    absl::MutexLock lock(&mutex_);
    return mirror_;
  }
  const std::vector<pb::KvEventMessage>& messages() const { return messages_; }

 private:
  void Loop() {
    pb::KvEventMessage message;
    while (reader_->Read(&message)) {
      absl::MutexLock lock(&mutex_);
      messages_.push_back(message);
      mirror_.Apply(message);
    }
  }

  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReader<pb::KvEventMessage>> reader_;
  absl::Mutex mutex_;
  EventMirror mirror_;
  std::vector<pb::KvEventMessage> messages_;
  std::thread thread_;
};

uint64_t CurrentSeq(Subscriber* subscriber) { return subscriber->mirror().next_seq - 1; }

TEST_P(WorkerServerTest, EventsReproduceTheCacheAcrossResubscription) {
  // From scratch: a snapshot, then live events; heartbeats prove the mirror equals the cache.
  auto first = std::make_unique<Subscriber>(stub_.get(), pb::SubscribeKvEventsRequest());
  ASSERT_TRUE(first->WaitForHeartbeat(0))
      << first->messages().size() << " messages; "
      << (first->messages().empty() ? std::string("") : first->messages().back().DebugString())
      << (first->mirror().errors.empty() ? "" : first->mirror().errors.front());
  // Enough distinct prompts to overflow the 64-block pool, so blocks get evicted too.
  for (int i = 0; i < 12; ++i)
    ASSERT_TRUE(Generate(TokenRequest(Prompt(200 + i, 90), 4)).status.ok());
  const uint64_t seq = CurrentSeq(first.get());
  ASSERT_TRUE(first->WaitForHeartbeat(seq));
  EventMirror kept = first->mirror();
  EXPECT_TRUE(kept.errors.empty()) << kept.errors.front();
  EXPECT_EQ(kept.snapshots, 1);
  EXPECT_GT(kept.batches, 0);
  first->Stop();  // the subscriber goes away mid-stream

  for (int i = 0; i < 6; ++i)
    ASSERT_TRUE(Generate(TokenRequest(Prompt(300 + i, 70), 4)).status.ok());

  // Resume from the next seq: replay, no snapshot, and the mirror stays exact.
  pb::SubscribeKvEventsRequest resume;
  resume.set_from_seq(kept.next_seq);
  resume.set_epoch(kept.epoch);
  Subscriber second(stub_.get(), resume, kept);
  ASSERT_TRUE(second.WaitForHeartbeat(kept.next_seq));
  ASSERT_FALSE(second.messages().empty());
  EXPECT_FALSE(second.messages().front().has_snapshot());
  const EventMirror resumed = second.mirror();
  EXPECT_TRUE(resumed.errors.empty()) << resumed.errors.front();
  EXPECT_EQ(resumed.snapshots, kept.snapshots);
  EXPECT_GT(resumed.heartbeats_checked, kept.heartbeats_checked);

  // A wrong epoch gets a snapshot that equals the resumed mirror.
  pb::SubscribeKvEventsRequest stale;
  stale.set_from_seq(kept.next_seq);
  stale.set_epoch(kept.epoch ^ 1);
  Subscriber third(stub_.get(), stale);
  ASSERT_TRUE(third.WaitForHeartbeat(0));
  EXPECT_TRUE(third.messages().front().has_snapshot());
  second.Stop();
  third.Stop();
  const EventMirror after_snapshot = third.mirror();
  EXPECT_TRUE(after_snapshot.errors.empty()) << after_snapshot.errors.front();
  if (after_snapshot.next_seq == second.mirror().next_seq) {
    EXPECT_EQ(after_snapshot.blocks, second.mirror().blocks);
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, WorkerServerTest, ::testing::Values("cpu", "sim"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

// A sim worker on a config-only directory of the Llama-3.1-8B shape (kvc-make-model
// --config-only): no weights, no tokenizer.
class SimWorkerTest : public ::testing::Test {
 protected:
  static constexpr double kSpeedup = 10;

  static void SetUpTestSuite() {
    dir_ = new testing::TempDir();
    const std::string model = dir_->path() + "/llama-3.1-8b-shape";
    auto made = testing::Run({BinDir() + "/kvc-make-model", "--out", model, "--preset",
                              "llama-3.1-8b-shape", "--config-only"},
                             dir_->path() + "/make-model.log");
    ASSERT_TRUE(made.ok() && *made == 0) << testing::ReadFile(dir_->path() + "/make-model.log");
    worker_ = new testing::Process();
    *worker_ = *testing::Process::Start(
        {BinDir() + "/kvc-worker", "--backend", "sim", "--model", model, "--listen", "127.0.0.1:0",
         "--port-file", dir_->path() + "/port", "--kv-cache-memory", "256MiB", "--sim-speedup",
         absl::StrCat(kSpeedup)},
        dir_->path() + "/worker.log");
    auto port = testing::WaitForPortFile(dir_->path() + "/port", worker_);
    ASSERT_TRUE(port.ok()) << port.status() << testing::ReadFile(dir_->path() + "/worker.log");
    address_ = new std::string(absl::StrCat("127.0.0.1:", *port));
  }

  static void TearDownTestSuite() {
    delete worker_;
    delete address_;
    delete dir_;
  }

  void SetUp() override {
    ASSERT_NE(address_, nullptr);
    stub_ = pb::Worker::NewStub(grpc::CreateChannel(*address_, grpc::InsecureChannelCredentials()));
  }

  Generation Generate(const pb::GenerateRequest& request) {
    Generation out;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    auto reader = stub_->Generate(&context, request);
    pb::GenerateResponse response;
    while (reader->Read(&response)) {
      if (response.has_chunk()) {
        out.tokens.insert(out.tokens.end(), response.chunk().token_ids().begin(),
                          response.chunk().token_ids().end());
      }
      if (response.has_result()) out.result = response.result();
    }
    out.status = reader->Finish();
    return out;
  }

  static testing::TempDir* dir_;
  static testing::Process* worker_;
  static std::string* address_;
  std::unique_ptr<pb::Worker::Stub> stub_;
};

testing::TempDir* SimWorkerTest::dir_ = nullptr;
testing::Process* SimWorkerTest::worker_ = nullptr;
std::string* SimWorkerTest::address_ = nullptr;

TEST_F(SimWorkerTest, ServesAConfigOnlyModelWithItsRealKvSizes) {
  grpc::ClientContext context;
  pb::WorkerInfo info;
  ASSERT_TRUE(stub_->GetInfo(&context, pb::GetInfoRequest(), &info).ok());
  EXPECT_EQ(info.backend(), "sim");
  EXPECT_EQ(info.vocab_size(), 128256u);
  EXPECT_EQ(info.hash().model_identity(), "llama-3.1-8b-shape");
  // 256 MiB / (16 tokens x 2 x 32 layers x 8 KV heads x 128 x 2 bytes) = 128 blocks.
  EXPECT_EQ(info.capacity_blocks(), 128u);
  EXPECT_EQ(info.max_context_tokens(), 131072u);

  std::vector<uint32_t> prompt(300);
  for (int i = 0; i < 300; ++i) prompt[i] = 1000 + 997 * i % 120000;
  const Generation g = Generate(TokenRequest(prompt, 24));
  ASSERT_TRUE(g.status.ok()) << g.status.error_message();
  EXPECT_EQ(g.tokens.size(), 24u);
  for (uint32_t token : g.tokens) {
    EXPECT_LT(token, 128256u);
    EXPECT_NE(token, 128001u);  // never EOS
  }
  EXPECT_EQ(g.result.usage().prompt_tokens(), 300u);
  const Generation again = Generate(TokenRequest(prompt, 24));
  EXPECT_EQ(again.result.usage().cached_prompt_tokens(), 288u);  // 18 full blocks
  EXPECT_EQ(again.tokens, g.tokens);
  // More than the 128-block pool holds.
  EXPECT_EQ(Generate(TokenRequest(std::vector<uint32_t>(2000, 5), 100)).status.error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
}

TEST_F(SimWorkerTest, StepsTakeTheirModelledTime) {
  // The 1000-token prefill's modelled time over the speedup is a floor for the time to the
  // first token; 20 back-to-back decode steps (each at least the cost of its first) end no
  // sooner than their modelled times after it, whatever the host's own delays.
  const backend::sim::CostModel cost(model::Llama31_8BShapeConfig(), model::DType::kBF16, {});
  const double prefill_ms =
      absl::ToDoubleMilliseconds(cost.StepTime({.prefill_tokens = 1000,
                                                .sequences = 1,
                                                .kv_tokens_read = 1000,
                                                .attention_pairs = 1000 * 1001 / 2}) /
                                 kSpeedup);
  const double decode_ms = absl::ToDoubleMilliseconds(cost.StepTime({.decode_sequences = 1,
                                                                     .sequences = 1,
                                                                     .kv_tokens_read = 1001,
                                                                     .attention_pairs = 1001}) /
                                                      kSpeedup);
  std::vector<uint32_t> prompt(1000);
  for (int i = 0; i < 1000; ++i) prompt[i] = 7 + 31 * i % 100000 + 17;
  const Generation g = Generate(TokenRequest(prompt, 21));
  ASSERT_TRUE(g.status.ok()) << g.status.error_message();
  EXPECT_GE(g.result.timings().time_to_first_token_ms(), prefill_ms);
  EXPECT_GE(g.result.timings().total_ms(), prefill_ms + 20 * decode_ms);
}

TEST_F(SimWorkerTest, TextAndStopStringsWithoutATokenizerAreInvalidArguments) {
  pb::GenerateRequest text;
  text.set_text("hello");
  text.mutable_sampling()->set_max_tokens(4);
  const Generation refused = Generate(text);
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(refused.status.error_message().find("no tokenizer"), std::string::npos)
      << refused.status.error_message();
  pb::GenerateRequest stop = TokenRequest({1, 2, 3}, 4);
  stop.mutable_sampling()->add_stop("x");
  EXPECT_EQ(Generate(stop).status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(Generate(TokenRequest({1, 2, 3}, 4)).status.ok());
}

TEST(WorkerProcessTest, SigtermShutsDownCleanly) {
  testing::TempDir dir;
  const std::string model = dir.path() + "/tiny";
  ASSERT_EQ(*testing::Run({BinDir() + "/kvc-make-model", "--out", model}, dir.path() + "/m.log"),
            0);
  auto worker = testing::Process::Start(
      {BinDir() + "/kvc-worker", "--model", model, "--listen", "127.0.0.1:0", "--port-file",
       dir.path() + "/port", "--kv-cache-memory", "1MiB", "--shutdown-grace", "2s"},
      dir.path() + "/worker.log");
  ASSERT_TRUE(worker.ok());
  ASSERT_TRUE(testing::WaitForPortFile(dir.path() + "/port", &*worker).ok())
      << testing::ReadFile(dir.path() + "/worker.log");
  const int status = worker->Stop(absl::Seconds(15));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << status << testing::ReadFile(dir.path() + "/worker.log");
}

TEST(WorkerProcessTest, RefusesABadModelDirectoryClearly) {
  testing::TempDir dir;
  const int code = *testing::Run({BinDir() + "/kvc-worker", "--model", dir.path() + "/missing"},
                                 dir.path() + "/worker.log");
  EXPECT_NE(code, 0);
  EXPECT_NE(testing::ReadFile(dir.path() + "/worker.log").find("cannot load model"),
            std::string::npos);
}

TEST(WorkerProcessTest, RefusesBadSimFlagsClearly) {
  testing::TempDir dir;
  const std::string model = dir.path() + "/tiny";
  ASSERT_EQ(*testing::Run({BinDir() + "/kvc-make-model", "--out", model}, dir.path() + "/m.log"),
            0);
  const std::string profile = dir.path() + "/profile.json";
  std::ofstream(profile) << R"({"peak_tflops": 989, "memory_efficency": 0.8})";
  struct Case {
    std::vector<std::string> flags;
    const char* message;
  };
  const Case cases[] = {
      {{"--backend", "gpu"}, "unknown --backend 'gpu' (available: cpu, cuda, sim)"},
      {{"--backend", "sim", "--sim-speedup", "0"}, "--sim-speedup must be a finite number > 0"},
      {{"--backend", "sim", "--sim-profile", profile}, "unknown field \"memory_efficency\""},
      {{"--backend", "sim", "--sim-profile", dir.path() + "/none.json"}, "no such sim profile"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> argv = {BinDir() + "/kvc-worker", "--model", model, "--listen",
                                     "127.0.0.1:0"};
    argv.insert(argv.end(), c.flags.begin(), c.flags.end());
    const std::string log = dir.path() + "/worker.log";
    EXPECT_NE(*testing::Run(argv, log), 0) << c.message;
    EXPECT_NE(testing::ReadFile(log).find(c.message), std::string::npos) << testing::ReadFile(log);
  }
}

// kvc-worker loads the CUDA backend at run time (worker/backend/cuda_loader.h): its ELF needs
// no CUDA library, so it runs on machines without CUDA, and a copy without
// libkvc_backend_cuda.so beside it says why --backend cuda cannot work.
TEST(WorkerProcessTest, CudaBackendIsLoadedAtRunTime) {
  testing::TempDir dir;
  const std::string worker = BinDir() + "/kvc-worker";
  const std::string needed_log = dir.path() + "/needed.log";
  ASSERT_EQ(*testing::Run({"/usr/bin/readelf", "--dynamic", worker}, needed_log), 0)
      << testing::ReadFile(needed_log);
  const std::string needed = testing::ReadFile(needed_log);
  ASSERT_NE(needed.find("(NEEDED)"), std::string::npos) << needed;
  for (const char* cuda_library : {"libcudart", "libcublas", "libcuda.so", "libnccl"}) {
    EXPECT_EQ(needed.find(cuda_library), std::string::npos) << cuda_library << "\n" << needed;
  }

  const std::string model = dir.path() + "/tiny";
  ASSERT_EQ(*testing::Run({BinDir() + "/kvc-make-model", "--out", model}, dir.path() + "/m.log"),
            0);
  const std::string lone_worker = dir.path() + "/kvc-worker";
  std::ofstream(lone_worker, std::ios::binary) << std::ifstream(worker, std::ios::binary).rdbuf();
  ASSERT_EQ(chmod(lone_worker.c_str(), 0755), 0);
  const std::string log = dir.path() + "/worker.log";
  EXPECT_NE(
      *testing::Run({lone_worker, "--model", model, "--listen", "127.0.0.1:0", "--backend", "cuda"},
                    log),
      0);
  EXPECT_NE(testing::ReadFile(log).find("--backend cuda: this kvc-worker has no CUDA backend: "
                                        "libkvc_backend_cuda.so is not in " +
                                        dir.path() + "/libkvc_backend_cuda.so"),
            std::string::npos)
      << testing::ReadFile(log);
}

}  // namespace
}  // namespace kvc
