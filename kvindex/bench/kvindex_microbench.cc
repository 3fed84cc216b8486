// Google Benchmark micro-benchmarks of the prefix index on synthetic data shaped like chat
// traffic: every request starts with one shared system prompt, conversations branch off it,
// and each conversation is cached on a few workers.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <random>
#include <thread>
#include <vector>

#include "benchmark/benchmark.h"
#include "common/block_hash.h"
#include "kvindex/prefix_index.h"

namespace kvc::kvindex {
namespace {

constexpr size_t kPromptBlocks = 32;
constexpr size_t kConversationBlocks = 720;

std::vector<StoredBlock> Chain(uint64_t parent, uint64_t tag, size_t length) {
  std::vector<StoredBlock> blocks;
  for (size_t i = 0; i < length; ++i) {
    const uint64_t local = tag * 1000003 + i;
    parent = ChainBlockHash(parent, local, kDefaultHashSeed);
    blocks.push_back({parent, local});
  }
  return blocks;
}

// FindMatches on an index where `workers` workers each hold the prompt and 16 conversations
// (each conversation on 2 workers); requests are held conversations plus a fresh tail.
void BM_FindMatches(benchmark::State& state) {
  const auto workers = static_cast<WorkerId>(state.range(0));
  auto index = NewPrefixIndex();
  const auto prompt = Chain(0x5a17, 0, kPromptBlocks);
  const size_t conversations = workers * 8;
  std::vector<std::vector<uint64_t>> requests;
  for (size_t c = 0; c < conversations; ++c) {
    const auto tail = Chain(prompt.back().seq_hash, c + 1, kConversationBlocks);
    for (WorkerId w : {WorkerId(c % workers), WorkerId((c * 7 + 1) % workers)}) {
      (void)index->ApplyStored(w, std::nullopt, prompt);
      (void)index->ApplyStored(w, prompt.back().seq_hash, tail);
    }
    std::vector<uint64_t> request;
    for (const auto& b : prompt) request.push_back(b.seq_hash);
    for (const auto& b : tail) request.push_back(b.seq_hash);
    for (const auto& b : Chain(tail.back().seq_hash, c + 1'000'000, 40)) {
      request.push_back(b.seq_hash);
    }
    requests.push_back(std::move(request));
  }
  std::vector<WorkerMatch> matches;
  std::mt19937 rng(1);
  for (auto _ : state) {
    index->FindMatches(requests[rng() % requests.size()], &matches);
    benchmark::DoNotOptimize(matches.data());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_FindMatches)->Arg(8)->Arg(64)->Arg(512);

// FindMatches at 64 workers while another thread keeps storing new conversations and
// evicting the oldest (one writer, as in the router), so the index grows to ~2M blocks and its
// location map rehashes several times on the way. The lookups' p50 / p99 / max show what
// waiting for the writer's bounded sections costs. Needs two idle cores to mean anything.
void BM_FindMatchesDuringWrites(benchmark::State& state) {
  constexpr WorkerId kWorkers = 64;
  constexpr size_t kLiveConversations = 3000;
  auto index = NewPrefixIndex();
  const auto prompt = Chain(0x5a17, 0, kPromptBlocks);
  std::vector<std::vector<uint64_t>> requests;
  for (size_t c = 0; c < kWorkers * 8; ++c) {
    const auto tail = Chain(prompt.back().seq_hash, c + 1, kConversationBlocks);
    const auto worker = static_cast<WorkerId>(c % kWorkers);
    (void)index->ApplyStored(worker, std::nullopt, prompt);
    (void)index->ApplyStored(worker, prompt.back().seq_hash, tail);
    std::vector<uint64_t> request;
    for (const auto& b : prompt) request.push_back(b.seq_hash);
    for (const auto& b : tail) request.push_back(b.seq_hash);
    requests.push_back(std::move(request));
  }
  std::atomic<bool> stop = false;
  std::thread writer([&] {
    std::vector<std::vector<uint64_t>> live(kLiveConversations);
    for (size_t step = 0; !stop.load(std::memory_order_relaxed); ++step) {
      const auto worker = static_cast<WorkerId>(step % kWorkers);
      std::vector<uint64_t>& slot = live[step % kLiveConversations];
      if (!slot.empty()) {
        std::reverse(slot.begin(), slot.end());
        (void)index->ApplyRemoved(static_cast<WorkerId>((step - kLiveConversations) % kWorkers),
                                  slot);
      }
      const auto tail = Chain(prompt.back().seq_hash, 5'000'000 + step, kConversationBlocks);
      (void)index->ApplyStored(worker, prompt.back().seq_hash, tail);
      slot.clear();
      for (const auto& block : tail) slot.push_back(block.seq_hash);
    }
  });
  std::vector<WorkerMatch> matches;
  std::vector<double> latencies_us;
  std::mt19937 rng(1);
  for (auto _ : state) {
    const auto start = std::chrono::steady_clock::now();
    index->FindMatches(requests[rng() % requests.size()], &matches);
    latencies_us.push_back(
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start)
            .count());
  }
  stop = true;
  writer.join();
  std::sort(latencies_us.begin(), latencies_us.end());
  state.counters["p50_us"] = latencies_us[latencies_us.size() / 2];
  state.counters["p99_us"] = latencies_us[latencies_us.size() * 99 / 100];
  state.counters["max_us"] = latencies_us.back();
  state.counters["blocks"] = static_cast<double>(index->GetStats().blocks);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_FindMatchesDuringWrites)->UseRealTime()->MinTime(3);

// One Stored event of a whole conversation under the shared prompt, then its eviction tail
// first (one Removed event): 2 * kConversationBlocks block operations per iteration.
void BM_StoreThenEvictConversation(benchmark::State& state) {
  const auto workers = static_cast<WorkerId>(state.range(0));
  auto index = NewPrefixIndex();
  const auto prompt = Chain(0x5a17, 0, kPromptBlocks);
  for (WorkerId w = 0; w < workers; ++w) (void)index->ApplyStored(w, std::nullopt, prompt);
  std::vector<std::vector<StoredBlock>> tails;
  std::vector<std::vector<uint64_t>> evictions;
  for (size_t c = 0; c < 64; ++c) {
    tails.push_back(Chain(prompt.back().seq_hash, c + 1, kConversationBlocks));
    std::vector<uint64_t> eviction;
    for (size_t i = tails.back().size(); i-- > 0;) eviction.push_back(tails.back()[i].seq_hash);
    evictions.push_back(std::move(eviction));
  }
  size_t step = 0;
  for (auto _ : state) {
    const size_t c = step % tails.size();
    const auto worker = static_cast<WorkerId>(step % workers);
    (void)index->ApplyStored(worker, prompt.back().seq_hash, tails[c]);
    (void)index->ApplyRemoved(worker, evictions[c]);
    ++step;
  }
  state.SetItemsProcessed(state.iterations() * 2 * kConversationBlocks);
}
BENCHMARK(BM_StoreThenEvictConversation)->Arg(8)->Arg(64);

// A worker adds itself to a conversation another worker already holds (no new blocks: the
// tree splits nodes and extends worker sets), then drops it again.
void BM_ShareThenDropConversation(benchmark::State& state) {
  auto index = NewPrefixIndex();
  const auto prompt = Chain(0x5a17, 0, kPromptBlocks);
  const auto tail = Chain(prompt.back().seq_hash, 1, kConversationBlocks);
  std::vector<uint64_t> eviction;
  for (size_t i = tail.size(); i-- > 0;) eviction.push_back(tail[i].seq_hash);
  for (WorkerId w = 0; w < 2; ++w) (void)index->ApplyStored(w, std::nullopt, prompt);
  (void)index->ApplyStored(0, prompt.back().seq_hash, tail);
  for (auto _ : state) {
    (void)index->ApplyStored(1, prompt.back().seq_hash, tail);
    (void)index->ApplyRemoved(1, eviction);
  }
  state.SetItemsProcessed(state.iterations() * 2 * kConversationBlocks);
}
BENCHMARK(BM_ShareThenDropConversation);

// Approximate mode as a router without events uses it: each routed request's whole chain is
// stored on its worker, refreshing recency, and the per-worker bound (8192 blocks) prunes the
// least recently used tails. Items are blocks stored.
void BM_ApproximateStoreRequest(benchmark::State& state) {
  constexpr WorkerId kWorkers = 64;
  PrefixIndexOptions options;
  options.max_blocks_per_worker = 8192;
  auto index = NewPrefixIndex(options);
  const auto prompt = Chain(0x5a17, 0, kPromptBlocks);
  std::vector<std::vector<StoredBlock>> requests;
  for (size_t c = 0; c < 1024; ++c) {
    auto request = prompt;
    const auto tail = Chain(prompt.back().seq_hash, c + 1, kConversationBlocks);
    request.insert(request.end(), tail.begin(), tail.end());
    requests.push_back(std::move(request));
  }
  std::mt19937 rng(1);
  for (auto _ : state) {
    (void)index->ApplyStored(static_cast<WorkerId>(rng() % kWorkers), std::nullopt,
                             requests[rng() % requests.size()]);
  }
  state.SetItemsProcessed(state.iterations() * (kPromptBlocks + kConversationBlocks));
}
BENCHMARK(BM_ApproximateStoreRequest);

}  // namespace
}  // namespace kvc::kvindex

BENCHMARK_MAIN();
