// The host-side step planning of the CUDA backend: which sequences go to which kernel, the
// packed arrays, and that a decode step's pointers depend only on its batch size (what lets a
// captured CUDA graph replay at any context length). No GPU needed.
#include "worker/backend/cuda/step_plan.h"

#include <cstring>
#include <vector>

#include "gtest/gtest.h"
#include "worker/backend/cuda/paged_attention.h"
#include "worker/backend/cuda/sampling.h"

namespace kvc::backend::cuda {
namespace {

std::vector<int32_t> Array(const std::vector<uint64_t>& buffer, size_t offset, int n) {
  std::vector<int32_t> out(n);
  std::memcpy(out.data(), reinterpret_cast<const uint8_t*>(buffer.data()) + offset,
              size_t(n) * sizeof(int32_t));
  return out;
}

TEST(StepPlanTest, MixedStepPacksEveryArray) {
  ForwardBatch batch;
  const std::vector<int32_t> a = {5, 6, 7, 8, 9}, b = {42}, c = {1, 2, 3};
  batch.AddSequence(a, 0, std::vector<int32_t>{3});      // prefill, 5 tokens
  batch.AddSequence(b, 20, std::vector<int32_t>{0, 1});  // decode at position 20
  batch.AddSequence(c, 4, std::vector<int32_t>{2});      // 3 tokens after 4 cached
  const int tokens_per_tile = 2;
  const StepPlan plan = PlanStep(batch, tokens_per_tile, /*sample=*/true);
  EXPECT_EQ(plan.num_tokens, 9);
  EXPECT_EQ(plan.num_seqs, 3);
  EXPECT_EQ(plan.num_rows, 3);
  EXPECT_EQ(plan.num_decode, 1);
  EXPECT_EQ(plan.num_tiles, 3 + 2);  // ceil(5 / 2) + ceil(3 / 2)
  EXPECT_EQ(plan.num_indices, 4);
  EXPECT_FALSE(plan.all_decode);
  EXPECT_LE(plan.bytes, StepBytesBound(9, 3, 4));

  const std::vector<TokenSampling> sampling = {{.sample = true,
                                                .temperature = 0.5f,
                                                .top_p = 0.9f,
                                                .top_k = 3,
                                                .seed = 7,
                                                .output_position = 2},
                                               {.sample = false},
                                               {.sample = true, .seed = 9}};
  std::vector<uint64_t> buffer(plan.bytes / 8 + 1);
  PackStep(batch, sampling, plan, tokens_per_tile, reinterpret_cast<uint8_t*>(buffer.data()));
  EXPECT_EQ(Array(buffer, plan.token_ids, 9), std::vector<int32_t>({5, 6, 7, 8, 9, 42, 1, 2, 3}));
  EXPECT_EQ(Array(buffer, plan.positions, 9), std::vector<int32_t>({0, 1, 2, 3, 4, 20, 4, 5, 6}));
  EXPECT_EQ(Array(buffer, plan.token_seq, 9), std::vector<int32_t>({0, 0, 0, 0, 0, 1, 2, 2, 2}));
  EXPECT_EQ(Array(buffer, plan.qo_indptr, 4), std::vector<int32_t>({0, 5, 6, 9}));
  EXPECT_EQ(Array(buffer, plan.context_lens, 3), std::vector<int32_t>({5, 21, 7}));
  EXPECT_EQ(Array(buffer, plan.kv_indptr, 4), std::vector<int32_t>({0, 1, 3, 4}));
  EXPECT_EQ(Array(buffer, plan.kv_indices, 4), std::vector<int32_t>({3, 0, 1, 2}));
  EXPECT_EQ(Array(buffer, plan.logit_rows, 3), std::vector<int32_t>({4, 5, 8}));
  EXPECT_EQ(Array(buffer, plan.decode_seqs, 1), std::vector<int32_t>({1}));
  // Tiles as (seq, first_token) pairs.
  EXPECT_EQ(Array(buffer, plan.tiles, 10), std::vector<int32_t>({0, 0, 0, 2, 0, 4, 2, 0, 2, 2}));
  SampleParams params[3];
  std::memcpy(params, reinterpret_cast<const uint8_t*>(buffer.data()) + plan.params,
              sizeof(params));
  EXPECT_EQ(params[0].seed, 7u);
  EXPECT_EQ(params[0].position, 2u);
  EXPECT_EQ(params[0].temperature, 0.5f);
  EXPECT_EQ(params[0].top_p, 0.9f);
  EXPECT_EQ(params[0].top_k, 3);
  EXPECT_EQ(params[0].sample, 1);
  EXPECT_EQ(params[1].sample, 0);
  EXPECT_EQ(params[2].seed, 9u);
}

TEST(StepPlanTest, AllLogitsGivesOneRowPerToken) {
  ForwardBatch batch;
  const std::vector<int32_t> a = {5, 6, 7}, b = {1};
  batch.AddSequence(a, 0, std::vector<int32_t>{0});
  batch.AddSequence(b, 9, std::vector<int32_t>{1});
  batch.all_logits = true;
  const StepPlan plan = PlanStep(batch, 64, /*sample=*/false);
  EXPECT_EQ(plan.num_rows, 4);
  std::vector<uint64_t> buffer(plan.bytes / 8 + 1);
  PackStep(batch, {}, plan, 64, reinterpret_cast<uint8_t*>(buffer.data()));
  EXPECT_EQ(Array(buffer, plan.logit_rows, 4), std::vector<int32_t>({0, 1, 2, 3}));
  // Sampling wants one token per sequence whatever all_logits says.
  EXPECT_EQ(PlanStep(batch, 64, /*sample=*/true).num_rows, 2);
}

// Decode steps of one batch size put every array but the block tables at the same offsets,
// whatever the context lengths; the block tables come last.
TEST(StepPlanTest, DecodeLayoutDependsOnlyOnBatchSize) {
  const auto decode_step = [](int context, int blocks_per_seq) {
    ForwardBatch batch;
    for (int s = 0; s < 4; ++s) {
      const std::vector<int32_t> token = {s};
      batch.AddSequence(token, context - 1, std::vector<int32_t>(blocks_per_seq, s));
    }
    return batch;
  };
  const StepPlan short_plan = PlanStep(decode_step(10, 1), 16, true);
  const StepPlan long_plan = PlanStep(decode_step(5000, 313), 16, true);
  EXPECT_TRUE(short_plan.all_decode);
  EXPECT_TRUE(long_plan.all_decode);
  EXPECT_EQ(short_plan.num_tiles, 0);
  for (auto field :
       {&StepPlan::params, &StepPlan::token_ids, &StepPlan::positions, &StepPlan::token_seq,
        &StepPlan::qo_indptr, &StepPlan::context_lens, &StepPlan::kv_indptr, &StepPlan::logit_rows,
        &StepPlan::decode_seqs, &StepPlan::tiles, &StepPlan::kv_indices}) {
    EXPECT_EQ(short_plan.*field, long_plan.*field);
    EXPECT_LE(long_plan.*field, long_plan.kv_indices);  // the block tables come last
  }
  EXPECT_GT(long_plan.bytes, short_plan.bytes);
  EXPECT_LE(long_plan.bytes, StepBytesBound(4, 4, 4 * 313));
}

}  // namespace
}  // namespace kvc::backend::cuda
