// Applies long random event sequences for many workers to the radix tree and to the
// reference model, and checks after every step that lookups, counts, digests and counters
// agree, and that the tree's invariants hold.
#include <algorithm>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kvindex/prefix_index.h"
#include "kvindex/reference_index.h"
#include "kvindex/test_chains.h"

namespace kvc::kvindex {
namespace {

struct Scenario {
  const char* name;
  uint64_t max_blocks_per_worker;  // 0: exact mode
  size_t max_blocks_per_write_section;
  uint32_t seed;
};

// Generates consistent chains: every block is ChainBlockHash(parent, local) with local hashes
// from a small alphabet, so workers often store the same blocks and chains share prefixes.
class EventGenerator {
 public:
  EventGenerator(uint32_t seed, WorkerId num_workers) : rng_(seed), num_workers_(num_workers) {}

  WorkerId Worker() { return Pick(num_workers_); }
  uint32_t Pick(uint32_t n) { return std::uniform_int_distribution<uint32_t>(0, n - 1)(rng_); }
  bool Chance(double p) { return std::bernoulli_distribution(p)(rng_); }

  // A known block (or none for a first block) and `length` new blocks after it.
  std::pair<std::optional<uint64_t>, std::vector<StoredBlock>> StoredEvent(WorkerId worker) {
    if (Chance(0.3)) {
      // A whole request from its first block, as approximate mode stores it: shares the
      // prefixes other workers hold.
      std::vector<StoredBlock> blocks;
      for (uint64_t seq_hash : Request()) blocks.push_back({seq_hash, 0});
      for (const StoredBlock& block : blocks) stored_by_[worker].push_back(block.seq_hash);
      return {std::nullopt, blocks};
    }
    std::optional<uint64_t> parent;
    const auto& mine = stored_by_[worker];
    if (!mine.empty() && Chance(0.6)) {
      parent = mine[Pick(static_cast<uint32_t>(mine.size()))];
    } else if (!known_.empty() && Chance(0.3)) {
      parent = known_[Pick(static_cast<uint32_t>(known_.size()))];  // often an orphan
    }
    const size_t length = 1 + Pick(Chance(0.2) ? 40 : 6);
    std::vector<StoredBlock> blocks = Extend(parent, length);
    for (const StoredBlock& block : blocks) stored_by_[worker].push_back(block.seq_hash);
    return {parent, blocks};
  }

  // Mostly blocks the worker stored (maybe since removed), sometimes anyone's; often a chain
  // in tail-first or head-first order, as caches evict.
  std::vector<uint64_t> RemovedEvent(WorkerId worker) {
    std::vector<uint64_t> hashes;
    const auto& mine = stored_by_[worker];
    const size_t count = 1 + Pick(8);
    if (!mine.empty() && Chance(0.5)) {
      const size_t end = 1 + Pick(static_cast<uint32_t>(mine.size()));
      for (size_t i = end; i-- > 0 && hashes.size() < count;) hashes.push_back(mine[i]);
      if (Chance(0.5)) std::reverse(hashes.begin(), hashes.end());
      return hashes;
    }
    for (size_t i = 0; i < count; ++i) {
      if (!mine.empty() && Chance(0.8)) {
        hashes.push_back(mine[Pick(static_cast<uint32_t>(mine.size()))]);
      } else if (!known_.empty()) {
        hashes.push_back(known_[Pick(static_cast<uint32_t>(known_.size()))]);
      }
    }
    return hashes;
  }

  // Runs in parent-before-child order, now and then with an orphan run.
  std::vector<StoredRun> Snapshot() {
    std::vector<StoredRun> runs;
    std::vector<uint64_t> in_snapshot;
    const size_t count = Pick(6);
    for (size_t r = 0; r < count; ++r) {
      std::optional<uint64_t> parent;
      if (!in_snapshot.empty() && Chance(0.6)) {
        parent = in_snapshot[Pick(static_cast<uint32_t>(in_snapshot.size()))];
      } else if (!known_.empty() && Chance(0.1)) {
        parent = known_[Pick(static_cast<uint32_t>(known_.size()))];
      }
      StoredRun run{parent, Extend(parent, 1 + Pick(10))};
      for (const StoredBlock& block : run.blocks) in_snapshot.push_back(block.seq_hash);
      runs.push_back(std::move(run));
    }
    return runs;
  }

  void Snapshotted(WorkerId worker, const std::vector<StoredRun>& runs) {
    stored_by_[worker].clear();
    for (const StoredRun& run : runs) {
      for (const StoredBlock& block : run.blocks) stored_by_[worker].push_back(block.seq_hash);
    }
  }

  // A request: the path to a known block, then a few blocks that may or may not exist.
  std::vector<uint64_t> Request() {
    std::vector<uint64_t> path;
    if (!known_.empty()) {
      // Mostly a block some worker stored lately, so requests hit shared, held prefixes.
      const auto& recent = stored_by_[Worker()];
      std::optional<uint64_t> at = known_[Pick(static_cast<uint32_t>(known_.size()))];
      if (!recent.empty() && Chance(0.7)) {
        at = recent[recent.size() - 1 -
                    Pick(static_cast<uint32_t>(std::min<size_t>(recent.size(), 50)))];
      }
      while (at.has_value()) {
        path.push_back(*at);
        at = parent_of_.at(*at);
      }
      std::reverse(path.begin(), path.end());
    }
    std::optional<uint64_t> tail;
    if (!path.empty()) tail = path.back();
    for (const StoredBlock& block : Extend(tail, Pick(4))) path.push_back(block.seq_hash);
    return path;
  }

 private:
  std::vector<StoredBlock> Extend(std::optional<uint64_t> parent, size_t length) {
    std::vector<StoredBlock> blocks;
    uint64_t previous = parent.value_or(kSalt);
    std::optional<uint64_t> previous_known = parent;
    for (size_t i = 0; i < length; ++i) {
      const uint64_t local = Pick(3);
      const uint64_t seq_hash = ChainBlockHash(previous, local, kDefaultHashSeed);
      if (parent_of_.emplace(seq_hash, previous_known).second) known_.push_back(seq_hash);
      blocks.push_back({seq_hash, local});
      previous = seq_hash;
      previous_known = seq_hash;
    }
    return blocks;
  }

  static constexpr uint64_t kSalt = 0xfeed;
  std::mt19937 rng_;
  WorkerId num_workers_;
  std::map<uint64_t, std::optional<uint64_t>> parent_of_;
  std::vector<uint64_t> known_;
  std::map<WorkerId, std::vector<uint64_t>> stored_by_;
};

class RandomEventsTest : public ::testing::TestWithParam<Scenario> {};

TEST_P(RandomEventsTest, TreeAgreesWithReference) {
  const Scenario& scenario = GetParam();
  constexpr WorkerId kWorkers = 12;
  constexpr int kSteps = 6000;
  PrefixIndexOptions options;
  options.max_blocks_per_worker = scenario.max_blocks_per_worker;
  options.max_blocks_per_write_section = scenario.max_blocks_per_write_section;
  auto tree = NewPrefixIndex(options);
  auto reference = NewReferenceIndex(options);
  EventGenerator events(scenario.seed, kWorkers);
  std::vector<WorkerMatch> tree_matches;
  std::vector<WorkerMatch> reference_matches;
  std::map<std::string, int> applied;

  for (int step = 0; step < kSteps; ++step) {
    const WorkerId worker = events.Worker();
    const uint32_t kind = events.Pick(100);
    std::string what;
    if (kind < 50) {
      const auto [parent, blocks] = events.StoredEvent(worker);
      const absl::Status a = tree->ApplyStored(worker, parent, blocks);
      const absl::Status b = reference->ApplyStored(worker, parent, blocks);
      ASSERT_EQ(a.code(), b.code()) << "step " << step << ": " << a << " vs " << b;
      what = a.ok() ? "stored" : "orphan";
    } else if (kind < 88) {
      const auto hashes = events.RemovedEvent(worker);
      ASSERT_TRUE(tree->ApplyRemoved(worker, hashes).ok());
      ASSERT_TRUE(reference->ApplyRemoved(worker, hashes).ok());
      what = "removed";
    } else if (kind < 92) {
      ASSERT_TRUE(tree->ApplyCleared(worker).ok());
      ASSERT_TRUE(reference->ApplyCleared(worker).ok());
      what = "cleared";
    } else if (kind < 94) {
      ASSERT_TRUE(tree->RemoveWorker(worker).ok());
      ASSERT_TRUE(reference->RemoveWorker(worker).ok());
      what = "remove_worker";
    } else {
      const auto snapshot = events.Snapshot();
      events.Snapshotted(worker, snapshot);
      const absl::Status a = tree->ReplaceWorker(worker, snapshot);
      const absl::Status b = reference->ReplaceWorker(worker, snapshot);
      ASSERT_EQ(a.code(), b.code()) << "step " << step << ": " << a << " vs " << b;
      what = "replace_worker";
    }
    ++applied[what];

    const absl::Status consistent = tree->CheckConsistency();
    ASSERT_TRUE(consistent.ok()) << "step " << step << " (" << what << "): " << consistent;
    for (WorkerId w = 0; w < kWorkers; ++w) {
      ASSERT_EQ(tree->GetWorkerSummary(w), reference->GetWorkerSummary(w))
          << "step " << step << " (" << what << "), worker " << w;
    }
    ASSERT_EQ(tree->GetStats().block_worker_pairs, reference->GetStats().block_worker_pairs);
    for (int r = 0; r < 4; ++r) {
      const auto request = events.Request();
      tree->FindMatches(request, &tree_matches);
      reference->FindMatches(request, &reference_matches);
      ASSERT_EQ(tree_matches, reference_matches) << "step " << step << " (" << what << ")";
    }
  }
  // The sequence must have exercised every kind of event, orphans included.
  for (const char* kind :
       {"stored", "orphan", "removed", "cleared", "remove_worker", "replace_worker"}) {
    EXPECT_GT(applied[kind], 0) << kind;
  }
  WorkerSummary totals;
  for (WorkerId w = 0; w < kWorkers; ++w) {
    const WorkerSummary s = reference->GetWorkerSummary(w);
    totals.duplicate_stores += s.duplicate_stores;
    totals.unknown_removals += s.unknown_removals;
    totals.pruned_blocks += s.pruned_blocks;
  }
  EXPECT_GT(totals.unknown_removals, 0u);
  if (scenario.max_blocks_per_worker > 0) {
    EXPECT_GT(totals.pruned_blocks, 0u);
  } else {
    EXPECT_GT(totals.duplicate_stores, 0u);
  }
}

INSTANTIATE_TEST_SUITE_P(Scenarios, RandomEventsTest,
                         ::testing::Values(Scenario{"Exact", 0, 256, 1},
                                           Scenario{"ExactTinySections", 0, 2, 2},
                                           Scenario{"ExactOtherSeed", 0, 7, 3},
                                           Scenario{"Approximate", 30, 256, 4},
                                           Scenario{"ApproximateTinySections", 12, 3, 5}),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace kvc::kvindex

namespace kvc::kvindex {
namespace {

// Events that no real worker sends: hashes from a tiny universe with no chaining, so blocks
// claim other blocks' places, repeat within a chain, and name parents at random. The tree must
// reject or count them, never crash, and keep its invariants (checked after every step, and at
// the end by clearing every worker, which checks that each digest returns to zero).
class GarbageEventsTest : public ::testing::TestWithParam<uint64_t> {};

TEST_P(GarbageEventsTest, NeverBreakInvariants) {
  PrefixIndexOptions options;
  options.max_blocks_per_write_section = 3;
  options.max_blocks_per_worker = GetParam();
  auto tree = NewPrefixIndex(options);
  std::mt19937 rng(7);
  auto hash = [&] { return uint64_t{1} + rng() % 40; };
  int rejected = 0;
  for (int step = 0; step < 20000; ++step) {
    const WorkerId worker = rng() % 6;
    const uint32_t kind = rng() % 100;
    if (kind < 60) {
      std::vector<StoredBlock> blocks(rng() % 6);
      for (StoredBlock& block : blocks) block.seq_hash = hash();
      std::optional<uint64_t> parent;
      if (rng() % 2) parent = hash();
      if (!tree->ApplyStored(worker, parent, blocks).ok()) ++rejected;
    } else if (kind < 90) {
      std::vector<uint64_t> hashes(rng() % 6);
      for (uint64_t& h : hashes) h = hash();
      ASSERT_TRUE(tree->ApplyRemoved(worker, hashes).ok());
    } else if (kind < 94) {
      ASSERT_TRUE(tree->ApplyCleared(worker).ok());
    } else if (kind < 96) {
      ASSERT_TRUE(tree->RemoveWorker(worker).ok());
    } else {
      std::vector<StoredRun> snapshot(rng() % 3);
      for (StoredRun& run : snapshot) {
        run.blocks.resize(rng() % 4);
        for (StoredBlock& block : run.blocks) block.seq_hash = hash();
        if (rng() % 2) run.parent_seq_hash = hash();
      }
      (void)tree->ReplaceWorker(worker, snapshot);
    }
    const absl::Status consistent = tree->CheckConsistency();
    ASSERT_TRUE(consistent.ok()) << "step " << step << ": " << consistent;
  }
  EXPECT_GT(rejected, 0);
  for (WorkerId worker = 0; worker < 6; ++worker) {
    ASSERT_TRUE(tree->ApplyCleared(worker).ok());
    EXPECT_EQ(tree->GetWorkerSummary(worker).blocks, BlockSetDigest{});
  }
  EXPECT_EQ(tree->GetStats().blocks, 0u);
}

INSTANTIATE_TEST_SUITE_P(ExactAndApproximate, GarbageEventsTest, ::testing::Values(0, 5),
                         [](const auto& info) {
                           return info.param == 0 ? std::string("Exact")
                                                  : std::string("Approximate");
                         });

}  // namespace
}  // namespace kvc::kvindex
