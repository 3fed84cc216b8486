#include "worker/backend/cpu/cpu_backend.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "worker/backend/cpu/reference_model.h"
#include "worker/backend/cpu/test_model.h"
#include "worker/backend/generate.h"

namespace kvc::backend::cpu {
namespace {

using model::Architecture;
using model::DType;
using model::ModelConfig;

std::vector<int32_t> RandomTokens(int n, int vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> t(n);
  for (int32_t& e : t) e = int32_t(rng() % vocab);
  return t;
}

std::unique_ptr<Backend> MakeBackend(const model::ModelWeights& w, DType kv_dtype,
                                     int block_size = 16, int num_blocks = 256, int threads = 2) {
  CpuBackendOptions options;
  options.kv_cache.num_blocks = num_blocks;
  options.kv_cache.block_size = block_size;
  options.kv_cache.dtype = kv_dtype;
  options.num_threads = threads;
  options.memory_bound_threads = 0;  // no calibration: keeps the tests short
  absl::StatusOr<std::unique_ptr<Backend>> backend = CreateCpuBackend(w, options);
  EXPECT_TRUE(backend.ok()) << backend.status();
  return std::move(*backend);
}

// Largest |a - b| over a logits row, relative to the row's largest |b| (logits span several
// units, so this is a stable scale).
double RowError(const float* a, const std::vector<double>& b) {
  double err = 0, scale = 1e-6;
  for (size_t i = 0; i < b.size(); ++i) {
    err = std::max(err, std::fabs(double(a[i]) - b[i]));
    scale = std::max(scale, std::fabs(b[i]));
  }
  return err / scale;
}

// Tolerances: f32 weights and f32 KV differ from the double reference only by float rounding
// through the layers; with 16-bit KV the reference rounds K/V the same way, but a rounding
// decision can flip between float and double, so allow a few 16-bit ulps.
double Tolerance(DType kv_dtype) { return kv_dtype == DType::kF32 ? 2e-5 : 5e-3; }

struct Variant {
  std::string name;
  Architecture arch;
  int num_kv_heads;
  bool rope_scaling;
  bool tied;
  DType weights;
  DType kv;
};
void PrintTo(const Variant& v, std::ostream* os) { *os << v.name; }

class PagedVsReferenceTest : public ::testing::TestWithParam<Variant> {
 protected:
  ModelConfig Config() const {
    const Variant& v = GetParam();
    ModelConfig c = TinyConfig(v.arch);
    c.num_kv_heads = v.num_kv_heads;
    if (v.rope_scaling) {
      // Small original context so that the three frequency bands all occur at head_dim 16.
      c.rope_theta = 500000.0;
      c.rope_scaling = model::Llama3RopeScaling{8.0, 1.0, 4.0, 64};
    }
    c.tie_word_embeddings = v.tied;
    c.dtype = v.weights;
    if (v.name == "MistralSlidingWindow") c.sliding_window = 24;
    // Wider heads take the attention kernels' vector paths (head_dim a multiple of 32).
    if (v.name == "LlamaBf16Kv" || v.name == "Qwen3F16Weights") c.head_dim = 32;
    if (v.name == "MistralSlidingWindow") c.head_dim = 64;
    if (v.name == "LlamaAttentionBias") c.attention_bias = c.o_proj_bias = true;
    return c;
  }
};

// A batch that mixes a fresh prefill, a decode step, and a prefill continuing after cached
// blocks (chunked prefill), with scattered block tables; all logits are compared.
TEST_P(PagedVsReferenceTest, MixedBatchMatchesReference) {
  const Variant& v = GetParam();
  const model::ModelWeights w = MakeRandomModel(Config(), 42);
  const ReferenceModel reference(w, v.kv == DType::kF32 ? std::nullopt : std::optional(v.kv));
  std::unique_ptr<Backend> backend = MakeBackend(w, v.kv, /*block_size=*/16, /*num_blocks=*/64);
  ASSERT_NE(backend, nullptr);

  const int vocab = w.config.vocab_size;
  const std::vector<int32_t> a = RandomTokens(37, vocab, 1);   // fresh prefill
  const std::vector<int32_t> b = RandomTokens(21, vocab, 2);   // 20 cached + 1 decode
  const std::vector<int32_t> c = RandomTokens(150, vocab, 3);  // 32 cached + 118 new
  // Scattered, non-overlapping block tables.
  std::vector<int32_t> blocks(64);
  std::iota(blocks.begin(), blocks.end(), 0);
  std::shuffle(blocks.begin(), blocks.end(), std::mt19937(9));
  const std::vector<int32_t> table_a(blocks.begin(), blocks.begin() + 3);
  const std::vector<int32_t> table_b(blocks.begin() + 3, blocks.begin() + 5);
  const std::vector<int32_t> table_c(blocks.begin() + 5, blocks.begin() + 15);

  // Step 1: the cached prefixes of b and c.
  std::vector<float> logits;
  ForwardBatch first;
  first.AddSequence(std::span(b).first(20), 0, table_b);
  first.AddSequence(std::span(c).first(32), 0, table_c);
  ASSERT_TRUE(backend->Forward(first, &logits).ok());
  ASSERT_EQ(logits.size(), 2u * vocab);

  // Step 2: the mixed batch.
  ForwardBatch step;
  step.AddSequence(a, 0, table_a);
  step.AddSequence(std::span(b).subspan(20), 20, table_b);
  step.AddSequence(std::span(c).subspan(32), 32, table_c);
  step.all_logits = true;
  ASSERT_TRUE(backend->Forward(step, &logits).ok());
  ASSERT_EQ(logits.size(), size_t(37 + 1 + 118) * vocab);

  const auto ref_a = reference.Forward(a);
  const auto ref_b = reference.Forward(b);
  const auto ref_c = reference.Forward(c);
  const double tol = Tolerance(v.kv);
  int row = 0;
  for (int i = 0; i < 37; ++i, ++row) {
    ASSERT_LT(RowError(&logits[size_t(row) * vocab], ref_a[i]), tol) << "a token " << i;
  }
  ASSERT_LT(RowError(&logits[size_t(row++) * vocab], ref_b[20]), tol) << "b decode";
  for (int i = 32; i < 150; ++i, ++row) {
    ASSERT_LT(RowError(&logits[size_t(row) * vocab], ref_c[i]), tol) << "c token " << i;
  }

  // Without all_logits: one row per sequence, its last token, equal to the rows above.
  std::vector<float> last;
  ForwardBatch decode;
  const std::vector<int32_t> next = {5};
  decode.AddSequence(next, 37, table_a);
  ASSERT_TRUE(backend->Forward(decode, &last).ok());
  std::vector<int32_t> a_next = a;
  a_next.push_back(5);
  ASSERT_LT(RowError(last.data(), reference.Forward(a_next)[37]), tol);
}

INSTANTIATE_TEST_SUITE_P(
    Architectures, PagedVsReferenceTest,
    ::testing::Values(
        Variant{"LlamaGqa", Architecture::kLlama, 2, false, true, DType::kF32, DType::kF32},
        Variant{"LlamaMha", Architecture::kLlama, 4, false, false, DType::kF32, DType::kF32},
        Variant{"LlamaMqaRopeScaling", Architecture::kLlama, 1, true, true, DType::kF32,
                DType::kF32},
        Variant{"MistralUntied", Architecture::kMistral, 2, false, false, DType::kF32, DType::kF32},
        Variant{"MistralSlidingWindow", Architecture::kMistral, 2, false, true, DType::kF32,
                DType::kF32},
        Variant{"LlamaAttentionBias", Architecture::kLlama, 2, false, true, DType::kF32,
                DType::kF32},
        Variant{"Qwen2Bias", Architecture::kQwen2, 2, false, false, DType::kF32, DType::kF32},
        Variant{"Qwen3QkNorm", Architecture::kQwen3, 2, false, true, DType::kF32, DType::kF32},
        Variant{"LlamaBf16Weights", Architecture::kLlama, 2, true, true, DType::kBF16, DType::kF32},
        Variant{"Qwen3F16Weights", Architecture::kQwen3, 1, false, false, DType::kF16, DType::kF32},
        Variant{"LlamaBf16Kv", Architecture::kLlama, 2, true, true, DType::kBF16, DType::kBF16},
        Variant{"Qwen2F16Kv", Architecture::kQwen2, 2, false, false, DType::kF32, DType::kF16}),
    [](const ::testing::TestParamInfo<Variant>& info) { return info.param.name; });

// Block sizes other than 16, including 1 and a non-power of two, with a prompt spanning many
// blocks given to the backend in uneven chunks.
TEST(CpuBackendTest, ChunkedPrefillAcrossBlockSizes) {
  const model::ModelWeights w = MakeRandomModel(TinyConfig(Architecture::kLlama), 5);
  const ReferenceModel reference(w);
  const std::vector<int32_t> prompt = RandomTokens(100, w.config.vocab_size, 4);
  const auto expected = reference.Forward(prompt);
  for (int block_size : {1, 5, 16, 64}) {
    std::unique_ptr<Backend> backend = MakeBackend(w, DType::kF32, block_size, 200);
    std::vector<int32_t> table((100 + block_size - 1) / block_size);
    for (size_t i = 0; i < table.size(); ++i) table[i] = int32_t(199 - 2 * i);
    int done = 0;
    for (int chunk : {7, 1, 40, 52}) {
      ForwardBatch batch;
      batch.AddSequence(std::span(prompt).subspan(done, chunk), done, table);
      std::vector<float> logits;
      ASSERT_TRUE(backend->Forward(batch, &logits).ok());
      done += chunk;
      ASSERT_LT(RowError(logits.data(), expected[done - 1]), 2e-5) << block_size << " " << done;
    }
  }
}

// Greedy decoding with the KV cache gives exactly the tokens of recomputing the whole
// sequence every step, for 64 new tokens, and the reference agrees on the first ones.
TEST(CpuBackendTest, KvCacheMatchesRecompute) {
  for (Architecture arch : {Architecture::kLlama, Architecture::kQwen2, Architecture::kQwen3}) {
    ModelConfig config = TinyConfig(arch);
    config.dtype = DType::kBF16;
    const model::ModelWeights w = MakeRandomModel(config, 77);
    std::unique_ptr<Backend> backend = MakeBackend(w, DType::kBF16);
    const std::vector<int32_t> prompt = RandomTokens(19, config.vocab_size, 8);
    GenerateOptions options;
    options.max_new_tokens = 64;
    options.use_kv_cache = true;
    absl::StatusOr<std::vector<int32_t>> cached = GenerateGreedy(*backend, prompt, options);
    options.use_kv_cache = false;
    absl::StatusOr<std::vector<int32_t>> recomputed = GenerateGreedy(*backend, prompt, options);
    ASSERT_TRUE(cached.ok()) << cached.status();
    ASSERT_TRUE(recomputed.ok()) << recomputed.status();
    ASSERT_EQ(cached->size(), 64u);
    EXPECT_EQ(*cached, *recomputed);
    // Logits are not flat: generation does not collapse into one repeated token.
    EXPECT_GT(std::set<int32_t>(cached->begin(), cached->end()).size(), 4u);
  }
}

// The same sequence gives bit-identical logits alone, in a batch, and with other thread counts.
TEST(CpuBackendTest, LogitsIndependentOfBatchAndThreads) {
  const model::ModelWeights w = MakeRandomModel(TinyConfig(Architecture::kQwen3), 3);
  const std::vector<int32_t> prompt = RandomTokens(40, w.config.vocab_size, 1);
  const std::vector<int32_t> other = RandomTokens(25, w.config.vocab_size, 2);
  const std::vector<int32_t> t0 = {0, 1, 2}, t1 = {3, 4};
  std::vector<float> alone, batched, threaded;
  {
    std::unique_ptr<Backend> backend = MakeBackend(w, DType::kBF16, 16, 8, 1);
    ForwardBatch b;
    b.AddSequence(prompt, 0, t0);
    ASSERT_TRUE(backend->Forward(b, &alone).ok());
  }
  {
    std::unique_ptr<Backend> backend = MakeBackend(w, DType::kBF16, 16, 8, 3);
    ForwardBatch b;
    b.AddSequence(other, 0, t1);
    b.AddSequence(prompt, 0, t0);
    ASSERT_TRUE(backend->Forward(b, &batched).ok());
  }
  const size_t vocab = w.config.vocab_size;
  ASSERT_EQ(batched.size(), 2 * vocab);
  EXPECT_TRUE(std::equal(alone.begin(), alone.end(), batched.begin() + vocab));
}

TEST(CpuBackendTest, KvBlocksReadAndCopy) {
  const model::ModelWeights w = MakeRandomModel(TinyConfig(Architecture::kLlama), 1);
  std::unique_ptr<Backend> backend = MakeBackend(w, DType::kF32, 4, 8);
  const std::vector<int32_t> tokens = RandomTokens(6, w.config.vocab_size, 1);
  const std::vector<int32_t> table = {5, 2};
  ForwardBatch batch;
  batch.AddSequence(tokens, 0, table);
  std::vector<float> logits;
  ASSERT_TRUE(backend->Forward(batch, &logits).ok());
  std::vector<float> k5, v5, k2, v2, k7, v7;
  ASSERT_TRUE(backend->ReadKvBlock(1, 5, &k5, &v5).ok());
  ASSERT_TRUE(backend->ReadKvBlock(1, 2, &k2, &v2).ok());
  ASSERT_EQ(k5.size(), size_t(2 * 4 * 16));  // kv_heads x block_size x head_dim
  // Block 2 holds positions 4 and 5 in slots 0 and 1; slots 2 and 3 are untouched (zero).
  const auto slot_norm = [](const std::vector<float>& k, int head, int slot) {
    double s = 0;
    for (int i = 0; i < 16; ++i) s += std::fabs(k[(head * 4 + slot) * 16 + i]);
    return s;
  };
  EXPECT_GT(slot_norm(k2, 1, 1), 0);
  EXPECT_EQ(slot_norm(k2, 1, 2), 0);
  EXPECT_GT(slot_norm(k5, 0, 3), 0);
  ASSERT_TRUE(backend->CopyKvBlock(5, 7).ok());
  ASSERT_TRUE(backend->ReadKvBlock(1, 7, &k7, &v7).ok());
  EXPECT_EQ(k7, k5);
  EXPECT_EQ(v7, v5);
  EXPECT_FALSE(backend->ReadKvBlock(2, 0, &k7, &v7).ok());
  EXPECT_FALSE(backend->CopyKvBlock(8, 0).ok());
}

TEST(CpuBackendTest, RejectsInconsistentBatches) {
  const model::ModelWeights w = MakeRandomModel(TinyConfig(Architecture::kLlama), 1);
  std::unique_ptr<Backend> backend = MakeBackend(w, DType::kF32, 4, 8);
  const std::vector<int32_t> tokens = {1, 2, 3, 4, 5};
  const std::vector<int32_t> two_blocks = {0, 1}, one_block = {0}, bad_block = {0, 8};
  std::vector<float> logits;
  ForwardBatch ok;
  ok.AddSequence(tokens, 0, two_blocks);
  EXPECT_TRUE(backend->Forward(ok, &logits).ok());
  ForwardBatch short_table;
  short_table.AddSequence(tokens, 0, one_block);
  EXPECT_EQ(backend->Forward(short_table, &logits).code(), absl::StatusCode::kInvalidArgument);
  ForwardBatch out_of_pool;
  out_of_pool.AddSequence(tokens, 0, bad_block);
  EXPECT_EQ(backend->Forward(out_of_pool, &logits).code(), absl::StatusCode::kInvalidArgument);
  ForwardBatch bad_position = ok;
  bad_position.positions[2] = 7;
  EXPECT_EQ(backend->Forward(bad_position, &logits).code(), absl::StatusCode::kInvalidArgument);
  ForwardBatch bad_token = ok;
  bad_token.token_ids[0] = w.config.vocab_size;
  EXPECT_EQ(backend->Forward(bad_token, &logits).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(backend->Forward(ForwardBatch{}, &logits).code(), absl::StatusCode::kInvalidArgument);

  GenerateOptions options;
  options.max_new_tokens = 100;  // 105 tokens need 27 blocks of 4; the pool has 8
  EXPECT_EQ(GenerateGreedy(*backend, tokens, options).status().code(),
            absl::StatusCode::kResourceExhausted);
}

TEST(CpuBackendTest, RejectsBadWeights) {
  model::ModelWeights w = MakeRandomModel(TinyConfig(Architecture::kQwen2), 1);
  CpuBackendOptions options;
  options.kv_cache.num_blocks = 4;
  w.layers[1].k_bias = {};
  absl::StatusOr<std::unique_ptr<Backend>> backend = CreateCpuBackend(w, options);
  EXPECT_EQ(backend.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(backend.status().message().find("layers.1.k_bias"), std::string::npos);
  w = MakeRandomModel(TinyConfig(Architecture::kLlama), 1);
  w.layers[0].down_proj.shape = {128, 64};
  EXPECT_EQ(CreateCpuBackend(w, options).status().code(), absl::StatusCode::kInvalidArgument);
  options.kv_cache.num_blocks = 0;
  EXPECT_EQ(CreateCpuBackend(MakeRandomModel(TinyConfig(Architecture::kLlama), 1), options)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kvc::backend::cpu
