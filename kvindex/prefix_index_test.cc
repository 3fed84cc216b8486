// Unit tests per operation, run against both the radix tree and the reference model.
#include "kvindex/prefix_index.h"

#include <functional>
#include <memory>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kvindex/reference_index.h"
#include "kvindex/test_chains.h"

namespace kvc::kvindex {
namespace {

using testing::ChainAfter;
using testing::DigestOf;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using testing::SeqHashes;

using Hashes = std::vector<uint64_t>;
constexpr uint64_t kSalt = 0x5a17;

struct Factory {
  std::string name;
  std::function<std::unique_ptr<PrefixIndex>(const PrefixIndexOptions&)> make;
};

class PrefixIndexTest : public ::testing::TestWithParam<Factory> {
 protected:
  std::unique_ptr<PrefixIndex> Make(PrefixIndexOptions options = {}) {
    // Tiny write sections so that chunked application is exercised everywhere.
    options.max_blocks_per_write_section = 3;
    return GetParam().make(options);
  }
  std::vector<WorkerMatch> Find(const PrefixIndex& index, std::span<const uint64_t> hashes) {
    std::vector<WorkerMatch> matches = {{99, 99}};  // must be cleared
    index.FindMatches(hashes, &matches);
    EXPECT_TRUE(index.CheckConsistency().ok()) << index.CheckConsistency();
    return matches;
  }
};

TEST_P(PrefixIndexTest, EmptyIndexMatchesNothing) {
  auto index = Make();
  const auto chain = SeqHashes(ChainAfter(kSalt, 1, 4));
  EXPECT_THAT(Find(*index, chain), IsEmpty());
  EXPECT_THAT(Find(*index, {}), IsEmpty());
  EXPECT_EQ(index->GetWorkerSummary(3), WorkerSummary{});
}

TEST_P(PrefixIndexTest, StoredChainMatchesLeadingBlocks) {
  auto index = Make();
  const auto blocks = ChainAfter(kSalt, 1, 10);
  const auto hashes = SeqHashes(blocks);
  ASSERT_TRUE(index->ApplyStored(0, std::nullopt, blocks).ok());
  EXPECT_THAT(Find(*index, hashes), ElementsAre(WorkerMatch{0, 10}));
  EXPECT_THAT(Find(*index, std::span(hashes).first(4)), ElementsAre(WorkerMatch{0, 4}));
  // A request that diverges after 7 blocks, then continues past the stored chain.
  auto diverged = SeqHashes(ChainAfter(hashes[6], 500, 8));
  diverged.insert(diverged.begin(), hashes.begin(), hashes.begin() + 7);
  EXPECT_THAT(Find(*index, diverged), ElementsAre(WorkerMatch{0, 7}));
  const WorkerSummary summary = index->GetWorkerSummary(0);
  EXPECT_EQ(summary.blocks, DigestOf(hashes));
}

TEST_P(PrefixIndexTest, WorkersSharingAPrefix) {
  auto index = Make();
  const auto shared = ChainAfter(kSalt, 1, 4);
  const auto tail0 = ChainAfter(shared.back().seq_hash, 100, 6);
  const auto tail1 = ChainAfter(shared.back().seq_hash, 200, 3);
  ASSERT_TRUE(index->ApplyStored(0, std::nullopt, shared).ok());
  ASSERT_TRUE(index->ApplyStored(0, shared.back().seq_hash, tail0).ok());
  ASSERT_TRUE(index->ApplyStored(1, std::nullopt, shared).ok());
  ASSERT_TRUE(index->ApplyStored(1, shared.back().seq_hash, tail1).ok());
  ASSERT_TRUE(index->ApplyStored(2, std::nullopt, std::span(shared).first(2)).ok());
  auto request = SeqHashes(shared);
  for (const auto& block : tail0) request.push_back(block.seq_hash);
  EXPECT_THAT(Find(*index, request),
              ElementsAre(WorkerMatch{0, 10}, WorkerMatch{1, 4}, WorkerMatch{2, 2}));
  EXPECT_EQ(index->GetStats().block_worker_pairs, 10u + 7u + 2u);
  EXPECT_EQ(index->GetStats().blocks, 4u + 6u + 3u);
}

TEST_P(PrefixIndexTest, StoredUnderHeldParentExtendsTheChain) {
  auto index = Make();
  const auto blocks = ChainAfter(kSalt, 1, 10);
  ASSERT_TRUE(index->ApplyStored(0, std::nullopt, std::span(blocks).first(5)).ok());
  ASSERT_TRUE(index->ApplyStored(0, blocks[4].seq_hash, std::span(blocks).subspan(5)).ok());
  EXPECT_THAT(Find(*index, SeqHashes(blocks)), ElementsAre(WorkerMatch{0, 10}));
}

TEST_P(PrefixIndexTest, OrphanStoreIsRejectedAndCounted) {
  auto index = Make();
  const auto blocks = ChainAfter(kSalt, 1, 6);
  ASSERT_TRUE(index->ApplyStored(1, std::nullopt, blocks).ok());
  ASSERT_TRUE(index->ApplyStored(0, std::nullopt, std::span(blocks).first(2)).ok());
  // Worker 0 never stored block 3, though worker 1 holds it: events were lost.
  const absl::Status status = index->ApplyStored(0, blocks[3].seq_hash, std::span(blocks).last(2));
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  // A parent nobody knows.
  EXPECT_EQ(index->ApplyStored(0, 12345, std::span(blocks).last(1)).code(),
            absl::StatusCode::kFailedPrecondition);
  const WorkerSummary summary = index->GetWorkerSummary(0);
  EXPECT_EQ(summary.orphan_stores, 2u);
  EXPECT_EQ(summary.blocks, DigestOf(SeqHashes(std::span(blocks).first(2))));
  EXPECT_THAT(Find(*index, SeqHashes(blocks)), ElementsAre(WorkerMatch{0, 2}, WorkerMatch{1, 6}));
}

TEST_P(PrefixIndexTest, DuplicateStoreIsCountedAndChangesNothing) {
  auto index = Make();
  const auto blocks = ChainAfter(kSalt, 1, 5);
  ASSERT_TRUE(index->ApplyStored(0, std::nullopt, std::span(blocks).first(3)).ok());
  ASSERT_TRUE(index->ApplyStored(0, std::nullopt, blocks).ok());
  const WorkerSummary summary = index->GetWorkerSummary(0);
  EXPECT_EQ(summary.duplicate_stores, 3u);
  EXPECT_EQ(summary.blocks, DigestOf(SeqHashes(blocks)));
  EXPECT_THAT(Find(*index, SeqHashes(blocks)), ElementsAre(WorkerMatch{0, 5}));
}

TEST_P(PrefixIndexTest, RemovedInnerBlockCutsTheMatch) {
  auto index = Make();
  const auto blocks = ChainAfter(kSalt, 1, 8);
  const auto hashes = SeqHashes(blocks);
  ASSERT_TRUE(index->ApplyStored(0, std::nullopt, blocks).ok());
  ASSERT_TRUE(index->ApplyStored(1, std::nullopt, blocks).ok());
  ASSERT_TRUE(index->ApplyRemoved(0, Hashes{hashes[3]}).ok());
  EXPECT_THAT(Find(*index, hashes), ElementsAre(WorkerMatch{0, 3}, WorkerMatch{1, 8}));
  // Worker 0 still holds the blocks after the hole, and may store children of them.
  const auto more = ChainAfter(hashes[7], 900, 2);
  ASSERT_TRUE(index->ApplyStored(0, hashes[7], more).ok());
  auto expected = hashes;
  expected.erase(expected.begin() + 3);
  expected.push_back(more[0].seq_hash);
  expected.push_back(more[1].seq_hash);
  EXPECT_EQ(index->GetWorkerSummary(0).blocks, DigestOf(expected));
  // ...but not under the removed block.
  EXPECT_EQ(index->ApplyStored(0, hashes[3], ChainAfter(hashes[3], 700, 1)).code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_P(PrefixIndexTest, RemovedTailInEitherOrder) {
  auto index = Make();
  const auto hashes = SeqHashes(ChainAfter(kSalt, 1, 12));
  ASSERT_TRUE(index->ApplyStored(0, std::nullopt, ChainAfter(kSalt, 1, 12)).ok());
  ASSERT_TRUE(index->ApplyStored(1, std::nullopt, ChainAfter(kSalt, 1, 12)).ok());
  ASSERT_TRUE(index->ApplyRemoved(0, Hashes{hashes[11], hashes[10], hashes[9]}).ok());
  ASSERT_TRUE(index->ApplyRemoved(1, Hashes{hashes[6], hashes[7], hashes[8], hashes[9]}).ok());
  EXPECT_THAT(Find(*index, hashes), ElementsAre(WorkerMatch{0, 9}, WorkerMatch{1, 6}));
  EXPECT_EQ(index->GetWorkerSummary(0).blocks.num_blocks, 9u);
  EXPECT_EQ(index->GetWorkerSummary(1).blocks.num_blocks, 8u);
}

TEST_P(PrefixIndexTest, RemovingUnheldBlocksIsCountedNoOp) {
  auto index = Make();
  const auto blocks = ChainAfter(kSalt, 1, 4);
  const auto hashes = SeqHashes(blocks);
  ASSERT_TRUE(index->ApplyStored(1, std::nullopt, blocks).ok());
  ASSERT_TRUE(index->ApplyRemoved(0, Hashes{hashes[0], 777}).ok());
  ASSERT_TRUE(index->ApplyRemoved(1, Hashes{hashes[2], hashes[2]}).ok());
  EXPECT_EQ(index->GetWorkerSummary(0).unknown_removals, 2u);
  EXPECT_EQ(index->GetWorkerSummary(1).unknown_removals, 1u);
  EXPECT_THAT(Find(*index, hashes), ElementsAre(WorkerMatch{1, 2}));
}

TEST_P(PrefixIndexTest, ClearedDropsBlocksKeepsCounters) {
  auto index = Make();
  const auto blocks = ChainAfter(kSalt, 1, 7);
  ASSERT_TRUE(index->ApplyStored(0, std::nullopt, blocks).ok());
  ASSERT_TRUE(index->ApplyStored(1, std::nullopt, std::span(blocks).first(3)).ok());
  ASSERT_TRUE(index->ApplyRemoved(0, Hashes{42}).ok());
  ASSERT_TRUE(index->ApplyCleared(0).ok());
  EXPECT_THAT(Find(*index, SeqHashes(blocks)), ElementsAre(WorkerMatch{1, 3}));
  const WorkerSummary summary = index->GetWorkerSummary(0);
  EXPECT_EQ(summary.blocks, BlockSetDigest{});
  EXPECT_EQ(summary.unknown_removals, 1u);
  EXPECT_EQ(index->GetStats().blocks, 3u);
}

TEST_P(PrefixIndexTest, RemoveWorkerForgetsEverything) {
  auto index = Make();
  const auto blocks = ChainAfter(kSalt, 1, 5);
  ASSERT_TRUE(index->ApplyStored(2, std::nullopt, blocks).ok());
  ASSERT_TRUE(index->ApplyRemoved(2, Hashes{42}).ok());
  ASSERT_TRUE(index->RemoveWorker(2).ok());
  EXPECT_THAT(Find(*index, SeqHashes(blocks)), IsEmpty());
  EXPECT_EQ(index->GetWorkerSummary(2), WorkerSummary{});
  EXPECT_EQ(index->GetStats().blocks, 0u);
  EXPECT_EQ(index->GetStats().block_worker_pairs, 0u);
}

TEST_P(PrefixIndexTest, ReplaceWorkerInstallsTheSnapshot) {
  auto index = Make();
  const auto old_blocks = ChainAfter(kSalt, 50, 6);
  ASSERT_TRUE(index->ApplyStored(0, std::nullopt, old_blocks).ok());
  const auto first = ChainAfter(kSalt, 1, 4);
  const auto second = ChainAfter(first[1].seq_hash, 10, 3);
  const auto orphan = ChainAfter(999, 20, 2);
  std::vector<StoredRun> snapshot = {
      {std::nullopt, first}, {first[1].seq_hash, second}, {uint64_t{999}, orphan}};
  const absl::Status status = index->ReplaceWorker(0, snapshot);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(Find(*index, SeqHashes(old_blocks)), IsEmpty());
  auto request = SeqHashes(std::span(first).first(2));
  for (const auto& block : second) request.push_back(block.seq_hash);
  EXPECT_THAT(Find(*index, request), ElementsAre(WorkerMatch{0, 5}));
  auto held = SeqHashes(first);
  for (const auto& block : second) held.push_back(block.seq_hash);
  const WorkerSummary summary = index->GetWorkerSummary(0);
  EXPECT_EQ(summary.blocks, DigestOf(held));
  EXPECT_EQ(summary.orphan_stores, 1u);
}

TEST_P(PrefixIndexTest, BadWorkerIdIsRejected) {
  PrefixIndexOptions options;
  options.max_workers = 4;
  auto index = Make(options);
  const auto blocks = ChainAfter(kSalt, 1, 2);
  EXPECT_EQ(index->ApplyStored(4, std::nullopt, blocks).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(index->ApplyRemoved(9, Hashes{1}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(index->ApplyCleared(4).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(index->RemoveWorker(4).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(index->ReplaceWorker(4, {}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Find(*index, SeqHashes(blocks)), IsEmpty());
}

TEST_P(PrefixIndexTest, ApproximateModePrunesLeastRecentTailFirst) {
  PrefixIndexOptions options;
  options.max_blocks_per_worker = 8;
  auto index = Make(options);
  const auto chain_a = ChainAfter(kSalt, 1, 6);
  auto chain_b = std::vector<StoredBlock>(chain_a.begin(), chain_a.begin() + 3);
  const auto tail_b = ChainAfter(chain_a[2].seq_hash, 100, 3);
  chain_b.insert(chain_b.end(), tail_b.begin(), tail_b.end());
  ASSERT_TRUE(index->ApplyStored(0, std::nullopt, chain_a).ok());
  ASSERT_TRUE(index->ApplyStored(0, std::nullopt, chain_b).ok());
  // 9 distinct blocks, bound 8: the oldest is chain A's last block.
  EXPECT_THAT(Find(*index, SeqHashes(chain_a)), ElementsAre(WorkerMatch{0, 5}));
  EXPECT_THAT(Find(*index, SeqHashes(chain_b)), ElementsAre(WorkerMatch{0, 6}));
  WorkerSummary summary = index->GetWorkerSummary(0);
  EXPECT_EQ(summary.pruned_blocks, 1u);
  EXPECT_EQ(summary.duplicate_stores, 0u);
  // Re-storing A refreshes it, so B's tail goes first now, deepest block first.
  ASSERT_TRUE(index->ApplyStored(0, std::nullopt, chain_a).ok());
  EXPECT_THAT(Find(*index, SeqHashes(chain_a)), ElementsAre(WorkerMatch{0, 6}));
  EXPECT_THAT(Find(*index, SeqHashes(chain_b)), ElementsAre(WorkerMatch{0, 5}));
  summary = index->GetWorkerSummary(0);
  EXPECT_EQ(summary.pruned_blocks, 2u);
  EXPECT_EQ(summary.blocks.num_blocks, 8u);
}

TEST_P(PrefixIndexTest, ApproximateChainLongerThanTheBoundKeepsItsHead) {
  PrefixIndexOptions options;
  options.max_blocks_per_worker = 4;
  auto index = Make(options);
  const auto blocks = ChainAfter(kSalt, 1, 10);
  ASSERT_TRUE(index->ApplyStored(3, std::nullopt, blocks).ok());
  EXPECT_THAT(Find(*index, SeqHashes(blocks)), ElementsAre(WorkerMatch{3, 4}));
  EXPECT_EQ(index->GetWorkerSummary(3).pruned_blocks, 6u);
}

INSTANTIATE_TEST_SUITE_P(
    BothIndexes, PrefixIndexTest,
    ::testing::Values(Factory{"RadixTree", [](const auto& o) { return NewPrefixIndex(o); }},
                      Factory{"Reference", [](const auto& o) { return NewReferenceIndex(o); }}),
    [](const auto& info) { return info.param.name; });

// Only the tree can see that a hash sits under a different parent than the event says.
TEST(RadixPrefixIndexTest, InconsistentHashesAreRejected) {
  auto index = NewPrefixIndex();
  const auto blocks = ChainAfter(kSalt, 1, 3);
  ASSERT_TRUE(index->ApplyStored(0, std::nullopt, blocks).ok());
  // Worker 1 claims blocks[2] is a first block, and then that it follows a new block.
  std::vector<StoredBlock> lying = {blocks[2]};
  EXPECT_EQ(index->ApplyStored(1, std::nullopt, lying).code(), absl::StatusCode::kInvalidArgument);
  std::vector<StoredBlock> lying_later = {{777, 1}, blocks[1]};
  EXPECT_EQ(index->ApplyStored(1, std::nullopt, lying_later).code(),
            absl::StatusCode::kInvalidArgument);
  const WorkerSummary summary = index->GetWorkerSummary(1);
  EXPECT_EQ(summary.inconsistent_stores, 2u);
  EXPECT_EQ(summary.blocks, DigestOf(std::vector<uint64_t>{777}));
  EXPECT_TRUE(index->CheckConsistency().ok());
}

TEST(RadixPrefixIndexTest, ChainThatSwapsAnInnerBlockIsNotCreditedWithIt) {
  auto index = NewPrefixIndex();
  const auto blocks = ChainAfter(kSalt, 1, 3);
  ASSERT_TRUE(index->ApplyStored(0, std::nullopt, blocks).ok());
  // Worker 1 claims [a, X, c] where the tree has [a, b, c]: it gets a and X, not b or c.
  std::vector<StoredBlock> claimed = {blocks[0], {4242, 9}, blocks[2]};
  EXPECT_EQ(index->ApplyStored(1, std::nullopt, claimed).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(index->GetWorkerSummary(1).blocks,
            DigestOf(std::vector<uint64_t>{blocks[0].seq_hash, 4242}));
  std::vector<WorkerMatch> matches;
  index->FindMatches(SeqHashes(blocks), &matches);
  EXPECT_THAT(matches, ElementsAre(WorkerMatch{0, 3}, WorkerMatch{1, 1}));
  EXPECT_TRUE(index->CheckConsistency().ok());
}

TEST(RadixPrefixIndexTest, CompressesChainsAndAccountsMemory) {
  auto index = NewPrefixIndex();
  const auto blocks = ChainAfter(kSalt, 1, 1000);
  for (WorkerId worker = 0; worker < 8; ++worker) {
    ASSERT_TRUE(index->ApplyStored(worker, std::nullopt, blocks).ok());
  }
  const IndexStats stats = index->GetStats();
  EXPECT_EQ(stats.nodes, 2u);  // the root and one node for the whole chain
  EXPECT_EQ(stats.blocks, 1000u);
  EXPECT_EQ(stats.block_worker_pairs, 8000u);
  EXPECT_GT(stats.memory_bytes, 1000u * sizeof(uint64_t));
  EXPECT_LT(stats.memory_bytes, 8000u * 64);
}

}  // namespace
}  // namespace kvc::kvindex
