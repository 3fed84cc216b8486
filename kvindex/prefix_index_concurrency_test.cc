// Readers call FindMatches while one writer applies events, snapshots and worker removals
// in tiny write sections. Readers check that every answer is well-formed and that a worker the
// writer never touches is always seen whole; at the end the tree must agree with the
// reference model fed the same events.
#include <atomic>
#include <random>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "kvindex/prefix_index.h"
#include "kvindex/reference_index.h"
#include "kvindex/test_chains.h"

namespace kvc::kvindex {
namespace {

using testing::ChainAfter;
using testing::SeqHashes;

TEST(PrefixIndexConcurrencyTest, ReadersSeeSaneAnswersWhileOneWriterMutates) {
  constexpr WorkerId kWorkers = 16;
  constexpr int kReaders = 2;
  constexpr int kWriterSteps = 5000;
  PrefixIndexOptions options;
  options.max_blocks_per_write_section = 4;
  auto tree = NewPrefixIndex(options);
  auto reference = NewReferenceIndex(options);

  // Worker 0 holds the shared system prompt and never changes.
  const auto prompt = ChainAfter(0x5eed, 1, 64);
  ASSERT_TRUE(tree->ApplyStored(0, std::nullopt, prompt).ok());
  ASSERT_TRUE(reference->ApplyStored(0, std::nullopt, prompt).ok());
  // Conversations under the prompt that the other workers store and evict.
  std::vector<std::vector<StoredBlock>> tails;
  for (int c = 0; c < 32; ++c) tails.push_back(ChainAfter(prompt.back().seq_hash, 1000 * c, 48));
  std::vector<std::vector<uint64_t>> requests;
  for (const auto& tail : tails) {
    auto request = SeqHashes(prompt);
    for (const auto& block : tail) request.push_back(block.seq_hash);
    requests.push_back(std::move(request));
  }

  std::atomic<bool> done = false;
  std::atomic<int> bad_answers = 0;
  std::atomic<long> lookups = 0;
  std::vector<std::thread> readers;
  // Stops and joins the readers however the test leaves this scope (a failed ASSERT returns).
  struct StopReaders {
    std::atomic<bool>& done;
    std::vector<std::thread>& readers;
    ~StopReaders() {
      done = true;
      for (std::thread& reader : readers) {
        if (reader.joinable()) reader.join();
      }
    }
  } stop_readers{done, readers};
  for (int r = 0; r < kReaders; ++r) {
    readers.emplace_back([&, r] {
      std::vector<WorkerMatch> matches;
      std::mt19937 rng(r);
      while (!done.load(std::memory_order_relaxed)) {
        const auto& request = requests[rng() % requests.size()];
        tree->FindMatches(request, &matches);
        bool sane = !matches.empty() && matches[0].worker == 0 &&
                    matches[0].matched_blocks == prompt.size();
        for (size_t i = 0; i < matches.size(); ++i) {
          sane = sane && matches[i].worker < kWorkers && matches[i].matched_blocks > 0 &&
                 matches[i].matched_blocks <= request.size() &&
                 (i == 0 || matches[i - 1].worker < matches[i].worker);
        }
        if (!sane) bad_answers.fetch_add(1);
        lookups.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }

  std::mt19937 rng(42);
  for (int step = 0; step < kWriterSteps; ++step) {
    const WorkerId worker = 1 + rng() % (kWorkers - 1);
    const auto& tail = tails[rng() % tails.size()];
    const uint32_t kind = rng() % 100;
    if (kind < 45) {
      const size_t length = 1 + rng() % tail.size();
      const std::span<const StoredBlock> blocks(tail.data(), length);
      ASSERT_EQ(tree->ApplyStored(worker, std::nullopt, prompt).ok(),
                reference->ApplyStored(worker, std::nullopt, prompt).ok());
      ASSERT_EQ(tree->ApplyStored(worker, prompt.back().seq_hash, blocks).code(),
                reference->ApplyStored(worker, prompt.back().seq_hash, blocks).code());
    } else if (kind < 90) {
      std::vector<uint64_t> evicted;
      for (size_t i = tail.size(); i-- > tail.size() / 2;) evicted.push_back(tail[i].seq_hash);
      ASSERT_TRUE(tree->ApplyRemoved(worker, evicted).ok());
      ASSERT_TRUE(reference->ApplyRemoved(worker, evicted).ok());
    } else if (kind < 95) {
      const std::vector<StoredRun> snapshot = {{std::nullopt, prompt},
                                               {prompt.back().seq_hash, tail}};
      ASSERT_TRUE(tree->ReplaceWorker(worker, snapshot).ok());
      ASSERT_TRUE(reference->ReplaceWorker(worker, snapshot).ok());
    } else if (kind < 98) {
      ASSERT_TRUE(tree->ApplyCleared(worker).ok());
      ASSERT_TRUE(reference->ApplyCleared(worker).ok());
    } else {
      ASSERT_TRUE(tree->RemoveWorker(worker).ok());
      ASSERT_TRUE(reference->RemoveWorker(worker).ok());
    }
  }
  done = true;
  for (std::thread& reader : readers) reader.join();  // so that the counts below are final

  EXPECT_EQ(bad_answers.load(), 0);
  EXPECT_GT(lookups.load(), 0);
  ASSERT_TRUE(tree->CheckConsistency().ok()) << tree->CheckConsistency();
  for (WorkerId worker = 0; worker < kWorkers; ++worker) {
    EXPECT_EQ(tree->GetWorkerSummary(worker), reference->GetWorkerSummary(worker)) << worker;
  }
  std::vector<WorkerMatch> from_tree;
  std::vector<WorkerMatch> from_reference;
  for (const auto& request : requests) {
    tree->FindMatches(request, &from_tree);
    reference->FindMatches(request, &from_reference);
    EXPECT_EQ(from_tree, from_reference);
  }
}

}  // namespace
}  // namespace kvc::kvindex
