#include "worker/engine/scheduler.h"

#include <gtest/gtest.h>

#include <numeric>

namespace kvc::engine {
namespace {

constexpr int kBlockSize = 4;

class SchedulerTest : public ::testing::Test {
 protected:
  void Init(int num_blocks, SchedulerOptions options) {
    blocks_ = std::make_unique<BlockManager>(
        BlockManager::Options{.num_blocks = num_blocks, .block_size = kBlockSize});
    scheduler_ =
        std::make_unique<Scheduler>(blocks_.get(), HashConfig{.block_size = kBlockSize}, options);
  }

  void Add(SequenceId id, int prompt_len, int first_token = 0) {
    std::vector<int32_t> prompt(prompt_len);
    std::iota(prompt.begin(), prompt.end(), first_token);
    scheduler_->Add(std::make_unique<Sequence>(id, prompt, GenerationOptions{}, 0));
  }

  // Plays the engine's part: marks the chunk computed, commits full blocks, and appends a
  // token to every sequence that reached its end.
  std::vector<std::pair<SequenceId, int>> Step() {
    std::vector<std::pair<SequenceId, int>> plan;
    for (const ScheduledChunk& chunk : scheduler_->Schedule()) {
      Sequence* s = chunk.sequence;
      plan.emplace_back(s->id, chunk.num_new_tokens);
      s->num_computed += chunk.num_new_tokens;
      s->HashFullBlocks(HashConfig{.block_size = kBlockSize});
      const int full = s->num_computed / kBlockSize;
      const int committed = blocks_->num_committed_blocks(s->id);
      blocks_->CommitFullBlocks(s->id,
                                std::span(s->block_hashes).subspan(committed, full - committed));
      if (s->num_uncomputed() == 0) s->tokens.push_back(1000 + s->num_generated());
    }
    return plan;
  }

  std::unique_ptr<BlockManager> blocks_;
  std::unique_ptr<Scheduler> scheduler_;
};

using Plan = std::vector<std::pair<SequenceId, int>>;

TEST_F(SchedulerTest, ChunksLongPromptsUnderTheTokenBudget) {
  Init(64, {.max_num_seqs = 8, .max_num_batched_tokens = 8});
  Add(1, 20);
  EXPECT_EQ(Step(), (Plan{{1, 8}}));
  EXPECT_EQ(Step(), (Plan{{1, 8}}));
  EXPECT_EQ(Step(), (Plan{{1, 4}}));
  EXPECT_EQ(Step(), (Plan{{1, 1}}));  // decode
}

TEST_F(SchedulerTest, NewRequestsJoinTheRunningBatch) {
  Init(64, {.max_num_seqs = 8, .max_num_batched_tokens = 16});
  Add(1, 5);
  EXPECT_EQ(Step(), (Plan{{1, 5}}));
  Add(2, 30, 100);
  EXPECT_EQ(Step(), (Plan{{1, 1}, {2, 15}}));  // decode first, then prefill fills the budget
  EXPECT_EQ(Step(), (Plan{{1, 1}, {2, 15}}));
  EXPECT_EQ(Step(), (Plan{{1, 1}, {2, 1}}));
}

TEST_F(SchedulerTest, RespectsTheSequenceLimit) {
  Init(64, {.max_num_seqs = 2, .max_num_batched_tokens = 64});
  Add(1, 3);
  Add(2, 3);
  Add(3, 3);
  EXPECT_EQ(Step(), (Plan{{1, 3}, {2, 3}}));
  EXPECT_EQ(scheduler_->num_waiting(), 1);
  ASSERT_NE(scheduler_->Remove(1), nullptr);
  EXPECT_EQ(Step(), (Plan{{2, 1}, {3, 3}}));
}

TEST_F(SchedulerTest, ReusesCachedPrefixAtAdmission) {
  Init(64, {.max_num_seqs = 8, .max_num_batched_tokens = 64});
  Add(1, 13);
  Step();
  scheduler_->Remove(1);
  Add(2, 13);                         // same tokens
  EXPECT_EQ(Step(), (Plan{{2, 1}}));  // 12 tokens (3 blocks) were cached
}

TEST_F(SchedulerTest, PreemptsTheNewestSequenceWhenBlocksRunOut) {
  // 5 blocks of 4 tokens: two 7-token prompts take 2 blocks each (one block stays in reserve
  // while something runs); their 9th tokens need a third block each, and only one is left.
  Init(5, {.max_num_seqs = 8, .max_num_batched_tokens = 64});
  Add(1, 7);
  Add(2, 7, 100);
  EXPECT_EQ(Step(), (Plan{{1, 7}, {2, 7}}));
  EXPECT_EQ(Step(), (Plan{{1, 1}, {2, 1}}));
  EXPECT_EQ(Step(), (Plan{{1, 1}}));  // 1 takes the last block; 2 is preempted
  EXPECT_EQ(scheduler_->num_preemptions(), 1);
  EXPECT_EQ(scheduler_->num_waiting(), 1);
  // 2 waits until 1 finishes, then resumes from its two cached blocks and recomputes only
  // the last token it had generated.
  scheduler_->Remove(1);
  EXPECT_EQ(Step(), (Plan{{2, 1}}));
  EXPECT_EQ(Step(), (Plan{{2, 1}}));
}

}  // namespace
}  // namespace kvc::engine
