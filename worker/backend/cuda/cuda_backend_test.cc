// The CUDA backend as a whole against the CPU backend on the same weights and batches, and
// its own invariants (graphs vs eager, device sampling vs the engine's sampler, KV blocks,
// bad input). Needs a GPU; skips otherwise (except the test of that refusal itself).
//
// Tolerances for logits, relative to the row's largest |logit| (about 30 for these models):
// the GPU rounds every GEMM input to the weights' dtype (the CPU keeps f32 activations), which
// adds ~0.1% noise per product; 3e-2 for bf16, 1e-2 for f16 leave a margin of 5x over what
// that noise adds up to in the tiny models, 5e-2 for the 28-layer qwen3-0.6b shape.
#include "worker/backend/cuda/cuda_backend.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "worker/backend/cpu/cpu_backend.h"
#include "worker/backend/cpu/test_model.h"
#include "worker/backend/cuda/cuda_test_util.h"
#include "worker/engine/sampler.h"
#include "worker/model/dtype_convert.h"
#include "worker/model/presets.h"

namespace kvc::backend {
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

std::unique_ptr<Backend> MakeCuda(const model::ModelWeights& w, DType kv_dtype,
                                  int num_blocks = 256, int max_graph_batch = 256) {
  CudaBackendOptions options;
  options.kv_cache.num_blocks = num_blocks;
  options.kv_cache.dtype = kv_dtype;
  options.max_batch_tokens = 512;
  options.max_batch_sequences = 16;
  options.max_graph_batch = max_graph_batch;
  options.log = [](const std::string&) {};
  absl::StatusOr<std::unique_ptr<Backend>> backend = CreateCudaBackend(w, options);
  EXPECT_TRUE(backend.ok()) << backend.status();
  return backend.ok() ? std::move(*backend) : nullptr;
}

std::unique_ptr<Backend> MakeCpu(const model::ModelWeights& w, DType kv_dtype,
                                 int num_blocks = 256) {
  CpuBackendOptions options;
  options.kv_cache.num_blocks = num_blocks;
  options.kv_cache.dtype = kv_dtype;
  options.memory_bound_threads = 0;
  absl::StatusOr<std::unique_ptr<Backend>> backend = CreateCpuBackend(w, options);
  EXPECT_TRUE(backend.ok()) << backend.status();
  return backend.ok() ? std::move(*backend) : nullptr;
}

// Largest |a - b| over a row, relative to the row's largest |b|.
double RowError(const float* a, const float* b, int n) {
  double err = 0, scale = 1e-6;
  for (int i = 0; i < n; ++i) {
    err = std::max(err, std::fabs(double(a[i]) - double(b[i])));
    scale = std::max(scale, std::fabs(double(b[i])));
  }
  return err / scale;
}

// The CPU test's mixed batch: step 1 caches the prefixes of b (20 tokens) and c (32 tokens);
// step 2 runs a fresh 37-token prefill (a), b's decode and c's 118-token continuation, all
// logits. Scattered block tables.
std::vector<ForwardBatch> MixedSteps(int vocab) {
  const std::vector<int32_t> a = RandomTokens(37, vocab, 1), b = RandomTokens(21, vocab, 2),
                             c = RandomTokens(150, vocab, 3);
  std::vector<int32_t> blocks(64);
  std::iota(blocks.begin(), blocks.end(), 0);
  std::shuffle(blocks.begin(), blocks.end(), std::mt19937(9));
  const std::vector<int32_t> ta(blocks.begin(), blocks.begin() + 3),
      tb(blocks.begin() + 3, blocks.begin() + 5), tc(blocks.begin() + 5, blocks.begin() + 15);
  ForwardBatch first, second;
  first.AddSequence(std::span(b).first(20), 0, tb);
  first.AddSequence(std::span(c).first(32), 0, tc);
  second.AddSequence(a, 0, ta);
  second.AddSequence(std::span(b).subspan(20), 20, tb);
  second.AddSequence(std::span(c).subspan(32), 32, tc);
  second.all_logits = true;
  return {first, second};
}

// `w` with every matrix (embeddings, projections, lm_head) stored as bf16, rounded to nearest
// even; norm weights and biases as they are. A tied lm_head stays tied.
model::ModelWeights MatricesAsBf16(const model::ModelWeights& w) {
  auto buffers = std::make_shared<std::vector<std::vector<uint16_t>>>();
  buffers->reserve(2 + 7 * w.layers.size());
  const auto round = [&](const model::TensorView& t) {
    std::vector<uint16_t>& out = buffers->emplace_back(size_t(t.numel()));
    for (int64_t i = 0; i < t.numel(); ++i) {
      out[i] = model::FloatToBF16(model::LoadAsFloat(t.data, t.dtype, i));
    }
    return model::TensorView{.data = out.data(), .dtype = DType::kBF16, .shape = t.shape};
  };
  model::ModelWeights r = w;
  r.embed_tokens = round(w.embed_tokens);
  r.lm_head = w.lm_head.data == w.embed_tokens.data ? r.embed_tokens : round(w.lm_head);
  for (model::LayerWeights& l : r.layers) {
    for (model::TensorView* t :
         {&l.q_proj, &l.k_proj, &l.v_proj, &l.o_proj, &l.gate_proj, &l.up_proj, &l.down_proj}) {
      *t = round(*t);
    }
  }
  r.storage = std::make_shared<std::pair<std::shared_ptr<const void>, decltype(buffers)>>(w.storage,
                                                                                          buffers);
  return r;
}

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

ModelConfig VariantConfig(const Variant& v) {
  ModelConfig c = cpu::TinyConfig(v.arch);
  c.num_kv_heads = v.num_kv_heads;
  if (v.rope_scaling) {
    c.rope_theta = 500000.0;
    c.rope_scaling = model::Llama3RopeScaling{8.0, 1.0, 4.0, 64};
  }
  c.tie_word_embeddings = v.tied;
  c.dtype = v.weights;
  if (v.name == "MistralSlidingWindow") {
    c.sliding_window = 24;
    c.head_dim = 64;
  }
  if (v.name == "LlamaAttentionBias") c.attention_bias = c.o_proj_bias = true;
  if (v.name == "Qwen3HeadDim32") c.head_dim = 32;
  return c;
}

class CudaVsCpuTest : public ::testing::TestWithParam<Variant> {};

// Every logits row of the mixed batch agrees with the CPU backend's. f32 models go to the GPU
// as stored (matrices converted to bf16 there) and to the CPU with their matrices already
// rounded to bf16, so both run the same weights.
TEST_P(CudaVsCpuTest, MixedBatchLogitsMatchCpuBackend) {
  KVC_REQUIRE_CUDA_DEVICE();
  const Variant& v = GetParam();
  const ModelConfig config = VariantConfig(v);
  const model::ModelWeights gpu_weights = cpu::MakeRandomModel(config, 42);
  const model::ModelWeights cpu_weights =
      config.dtype == DType::kF32 ? MatricesAsBf16(gpu_weights) : gpu_weights;
  std::unique_ptr<Backend> gpu = MakeCuda(gpu_weights, v.kv, 64);
  std::unique_ptr<Backend> cpu = MakeCpu(cpu_weights, v.kv, 64);
  ASSERT_NE(gpu, nullptr);
  ASSERT_NE(cpu, nullptr);
  const int vocab = config.vocab_size;
  const double tol = config.dtype == DType::kF16 ? 1e-2 : 3e-2;
  for (const ForwardBatch& step : MixedSteps(vocab)) {
    std::vector<float> gpu_logits, cpu_logits;
    ASSERT_TRUE(gpu->Forward(step, &gpu_logits).ok());
    ASSERT_TRUE(cpu->Forward(step, &cpu_logits).ok());
    ASSERT_EQ(gpu_logits.size(), cpu_logits.size());
    for (size_t row = 0; row < gpu_logits.size() / vocab; ++row) {
      ASSERT_LT(RowError(&gpu_logits[row * vocab], &cpu_logits[row * vocab], vocab), tol)
          << "row " << row;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Architectures, CudaVsCpuTest,
    ::testing::Values(
        Variant{"LlamaGqa", Architecture::kLlama, 2, false, true, DType::kBF16, DType::kBF16},
        Variant{"LlamaMha", Architecture::kLlama, 4, false, false, DType::kBF16, DType::kBF16},
        Variant{"LlamaMqaRopeScaling", Architecture::kLlama, 1, true, true, DType::kBF16,
                DType::kF32},
        Variant{"MistralSlidingWindow", Architecture::kMistral, 2, false, true, DType::kBF16,
                DType::kBF16},
        Variant{"LlamaAttentionBias", Architecture::kLlama, 2, false, true, DType::kBF16,
                DType::kBF16},
        Variant{"Qwen2Bias", Architecture::kQwen2, 2, false, false, DType::kBF16, DType::kF16},
        Variant{"Qwen3QkNorm", Architecture::kQwen3, 2, false, true, DType::kBF16, DType::kBF16},
        Variant{"Qwen3HeadDim32", Architecture::kQwen3, 1, false, true, DType::kF16, DType::kF32},
        Variant{"LlamaF32Weights", Architecture::kLlama, 2, true, true, DType::kF32, DType::kBF16}),
    [](const ::testing::TestParamInfo<Variant>& info) { return info.param.name; });

// The qwen3-0.6b shape (28 layers, head_dim 128, q/k norm, vocab 151936): a 24-token prompt
// and one decode step, last-token logits against the CPU backend.
TEST(CudaBackendTest, Qwen3ShapeLogitsMatchCpuBackend) {
  KVC_REQUIRE_CUDA_DEVICE();
  const model::ModelWeights w = cpu::MakeRandomModel(model::Qwen3_06BShapeConfig(), 7);
  std::unique_ptr<Backend> gpu = MakeCuda(w, DType::kBF16, 8);
  std::unique_ptr<Backend> cpu = MakeCpu(w, DType::kBF16, 8);
  ASSERT_NE(gpu, nullptr);
  ASSERT_NE(cpu, nullptr);
  const int vocab = w.config.vocab_size;
  const std::vector<int32_t> prompt = RandomTokens(25, vocab, 4);
  const std::vector<int32_t> table = {3, 6};
  ForwardBatch prefill, decode;
  prefill.AddSequence(std::span(prompt).first(24), 0, table);
  decode.AddSequence(std::span(prompt).subspan(24), 24, table);
  for (const ForwardBatch* step : {&prefill, &decode}) {
    std::vector<float> gpu_logits, cpu_logits;
    ASSERT_TRUE(gpu->Forward(*step, &gpu_logits).ok());
    ASSERT_TRUE(cpu->Forward(*step, &cpu_logits).ok());
    ASSERT_EQ(gpu_logits.size(), size_t(vocab));
    EXPECT_LT(RowError(gpu_logits.data(), cpu_logits.data(), vocab), 5e-2);
  }
}

// A model stored as f32 runs exactly as the same model with its matrices rounded to bf16 (the
// upload's conversion, round to nearest even); norms and biases stay f32 on the GPU.
TEST(CudaBackendTest, F32WeightsRunAsTheirBf16Rounding) {
  KVC_REQUIRE_CUDA_DEVICE();
  for (bool tied : {true, false}) {
    ModelConfig config = cpu::TinyConfig(Architecture::kQwen2);
    config.dtype = DType::kF32;
    config.tie_word_embeddings = tied;
    const model::ModelWeights f32 = cpu::MakeRandomModel(config, 3);
    const model::ModelWeights bf16 = MatricesAsBf16(f32);
    std::unique_ptr<Backend> a = MakeCuda(f32, DType::kBF16, 64),
                             b = MakeCuda(bf16, DType::kBF16, 64);
    ASSERT_NE(a, nullptr);
    ASSERT_NE(b, nullptr);
    for (const ForwardBatch& step : MixedSteps(config.vocab_size)) {
      std::vector<float> la, lb;
      ASSERT_TRUE(a->Forward(step, &la).ok());
      ASSERT_TRUE(b->Forward(step, &lb).ok());
      EXPECT_EQ(la, lb) << (tied ? "tied" : "untied");
    }
  }
}

// Decode steps replayed from CUDA graphs give the same bits as eager runs, with logits and with
// device sampling (graphs are captured on a batch size's second step).
TEST(CudaBackendTest, GraphsMatchEagerSteps) {
  KVC_REQUIRE_CUDA_DEVICE();
  ModelConfig config = cpu::TinyConfig(Architecture::kLlama);
  config.dtype = DType::kBF16;
  const model::ModelWeights w = cpu::MakeRandomModel(config, 11);
  std::unique_ptr<Backend> graphs = MakeCuda(w, DType::kBF16, 64, 256);
  std::unique_ptr<Backend> eager = MakeCuda(w, DType::kBF16, 64, 0);
  ASSERT_NE(graphs, nullptr);
  ASSERT_NE(eager, nullptr);
  const int seqs = 3, vocab = config.vocab_size;
  std::vector<std::vector<int32_t>> tokens(seqs), tables(seqs);
  for (int s = 0; s < seqs; ++s) {
    tokens[s] = RandomTokens(10 + 7 * s, vocab, s + 1);
    for (int b = 0; b < 4; ++b) tables[s].push_back(s * 4 + b);
  }
  ForwardBatch prefill;
  for (int s = 0; s < seqs; ++s) prefill.AddSequence(tokens[s], 0, tables[s]);
  std::vector<float> lg, le;
  ASSERT_TRUE(graphs->Forward(prefill, &lg).ok());
  ASSERT_TRUE(eager->Forward(prefill, &le).ok());
  ASSERT_EQ(lg, le);
  for (int step = 0; step < 8; ++step) {
    ForwardBatch decode;
    std::vector<TokenSampling> sampling;
    for (int s = 0; s < seqs; ++s) {
      tokens[s].push_back(int32_t((s * 31 + step * 17) % vocab));
      decode.AddSequence(std::span(tokens[s]).last(1), int(tokens[s].size()) - 1, tables[s]);
      sampling.push_back(TokenSampling{.sample = true,
                                       .temperature = s == 0 ? 0.0f : 0.8f,
                                       .top_p = s == 2 ? 0.9f : 1.0f,
                                       .top_k = s == 1 ? 20 : 0,
                                       .seed = uint64_t(s),
                                       .output_position = uint64_t(step)});
    }
    if (step % 2 == 0) {
      ASSERT_TRUE(graphs->Forward(decode, &lg).ok());
      ASSERT_TRUE(eager->Forward(decode, &le).ok());
      ASSERT_EQ(lg, le) << "step " << step;
    } else {
      SampledTokens sg, se;
      ASSERT_TRUE(graphs->ForwardAndSample(decode, sampling, &sg).ok());
      ASSERT_TRUE(eager->ForwardAndSample(decode, sampling, &se).ok());
      ASSERT_EQ(sg.token_ids, se.token_ids) << "step " << step;
      ASSERT_EQ(sg.logprobs, se.logprobs) << "step " << step;
    }
  }
}

// Device sampling picks what the engine's sampler picks from the same step's logits.
TEST(CudaBackendTest, DeviceSamplingMatchesEngineSamplerOnItsLogits) {
  KVC_REQUIRE_CUDA_DEVICE();
  ModelConfig config = cpu::TinyConfig(Architecture::kQwen3);
  config.dtype = DType::kBF16;
  const model::ModelWeights w = cpu::MakeRandomModel(config, 5);
  std::unique_ptr<Backend> backend = MakeCuda(w, DType::kBF16, 64);
  ASSERT_NE(backend, nullptr);
  const ForwardBatch step = MixedSteps(config.vocab_size)[1];
  std::vector<float> logits;
  ForwardBatch last_rows = step;
  last_rows.all_logits = false;
  for (const ForwardBatch& s : MixedSteps(config.vocab_size)) (void)backend->Forward(s, &logits);
  ASSERT_TRUE(backend->Forward(last_rows, &logits).ok());
  const std::vector<engine::SamplingOptions> modes = {{.temperature = 0.0f},
                                                      {.temperature = 1.0f, .top_k = 7},
                                                      {.temperature = 0.7f, .top_p = 0.8f}};
  std::vector<TokenSampling> sampling;
  for (int s = 0; s < step.num_sequences(); ++s) {
    sampling.push_back(TokenSampling{.sample = true,
                                     .temperature = modes[s].temperature,
                                     .top_p = modes[s].top_p,
                                     .top_k = modes[s].top_k,
                                     .seed = uint64_t(100 + s),
                                     .output_position = uint64_t(3 * s)});
  }
  SampledTokens sampled;
  ASSERT_TRUE(backend->ForwardAndSample(step, sampling, &sampled).ok());
  ASSERT_EQ(sampled.token_ids.size(), size_t(step.num_sequences()));
  ASSERT_EQ(sampled.logprobs.size(), size_t(step.num_sequences()));
  std::vector<float> scratch;
  for (int s = 0; s < step.num_sequences(); ++s) {
    const engine::Sampler sampler(modes[s], 100 + s);
    const std::span<const float> row(logits.data() + size_t(s) * config.vocab_size,
                                     config.vocab_size);
    const engine::SampledToken want = sampler.Sample(row, 3 * s, &scratch);
    EXPECT_EQ(sampled.token_ids[s], int32_t(want.token)) << "sequence " << s;
    EXPECT_NEAR(sampled.logprobs[s], want.logprob, 1e-5);
  }
  // A sequence that wants no token gets -1.
  sampling[1].sample = false;
  ASSERT_TRUE(backend->ForwardAndSample(step, sampling, &sampled).ok());
  EXPECT_EQ(sampled.token_ids[1], -1);
}

TEST(CudaBackendTest, KvBlocksReadAndCopy) {
  KVC_REQUIRE_CUDA_DEVICE();
  const model::ModelWeights w = cpu::MakeRandomModel(cpu::TinyConfig(Architecture::kLlama), 1);
  CudaBackendOptions options;
  options.kv_cache.num_blocks = 8;
  options.kv_cache.block_size = 4;
  options.kv_cache.dtype = DType::kF32;
  options.log = [](const std::string&) {};
  absl::StatusOr<std::unique_ptr<Backend>> created = CreateCudaBackend(w, options);
  ASSERT_TRUE(created.ok()) << created.status();
  Backend& backend = **created;
  const std::vector<int32_t> tokens = RandomTokens(6, w.config.vocab_size, 1);
  const std::vector<int32_t> table = {5, 2};
  ForwardBatch batch;
  batch.AddSequence(tokens, 0, table);
  std::vector<float> logits;
  ASSERT_TRUE(backend.Forward(batch, &logits).ok());
  std::vector<float> k5, v5, k2, v2, k7, v7;
  ASSERT_TRUE(backend.ReadKvBlock(1, 5, &k5, &v5).ok());
  ASSERT_TRUE(backend.ReadKvBlock(1, 2, &k2, &v2).ok());
  ASSERT_EQ(k5.size(), size_t(2 * 4 * 16));  // kv_heads x block_size x head_dim
  const auto slot_norm = [](const std::vector<float>& k, int head, int slot) {
    double s = 0;
    for (int i = 0; i < 16; ++i) s += std::fabs(k[(head * 4 + slot) * 16 + i]);
    return s;
  };
  EXPECT_GT(slot_norm(k2, 1, 1), 0);  // position 5
  EXPECT_EQ(slot_norm(k2, 1, 2), 0);  // never written
  EXPECT_GT(slot_norm(v5, 0, 3), 0);
  ASSERT_TRUE(backend.CopyKvBlock(5, 7).ok());
  ASSERT_TRUE(backend.ReadKvBlock(1, 7, &k7, &v7).ok());
  EXPECT_EQ(k7, k5);
  EXPECT_EQ(v7, v5);
  EXPECT_EQ(backend.ReadKvBlock(2, 0, &k7, &v7).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(backend.CopyKvBlock(8, 0).code(), absl::StatusCode::kInvalidArgument);
}

TEST(CudaBackendTest, RejectsBadInput) {
  KVC_REQUIRE_CUDA_DEVICE();
  const model::ModelWeights w = cpu::MakeRandomModel(cpu::TinyConfig(Architecture::kLlama), 1);
  std::unique_ptr<Backend> backend = MakeCuda(w, DType::kBF16, 8);
  ASSERT_NE(backend, nullptr);
  const std::vector<int32_t> tokens = {1, 2, 3, 4, 5};
  const std::vector<int32_t> table = {0}, bad_block = {8};
  std::vector<float> logits;
  ForwardBatch ok;
  ok.AddSequence(tokens, 0, table);
  EXPECT_TRUE(backend->Forward(ok, &logits).ok());
  ForwardBatch out_of_pool;
  out_of_pool.AddSequence(tokens, 0, bad_block);
  EXPECT_EQ(backend->Forward(out_of_pool, &logits).code(), absl::StatusCode::kInvalidArgument);
  ForwardBatch bad_token = ok;
  bad_token.token_ids[0] = w.config.vocab_size;
  EXPECT_EQ(backend->Forward(bad_token, &logits).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(backend->Forward(ForwardBatch{}, &logits).code(), absl::StatusCode::kInvalidArgument);
  SampledTokens sampled;
  EXPECT_EQ(backend->ForwardAndSample(ok, {}, &sampled).code(), absl::StatusCode::kInvalidArgument);
  const TokenSampling bad_top_p{.sample = true, .top_p = 0.0f};
  EXPECT_EQ(backend->ForwardAndSample(ok, std::span(&bad_top_p, 1), &sampled).code(),
            absl::StatusCode::kInvalidArgument);
  // Still serving after the refusals.
  EXPECT_TRUE(backend->Forward(ok, &logits).ok());

  CudaBackendOptions options;
  options.kv_cache.num_blocks = 4;
  options.log = [](const std::string&) {};
  model::ModelWeights odd = cpu::MakeRandomModel(
      [] {
        ModelConfig c = cpu::TinyConfig(Architecture::kLlama);
        c.head_dim = 80;
        return c;
      }(),
      1);
  EXPECT_EQ(CreateCudaBackend(odd, options).status().code(), absl::StatusCode::kUnimplemented);
  model::ModelWeights missing = cpu::MakeRandomModel(cpu::TinyConfig(Architecture::kQwen2), 1);
  missing.layers[1].k_bias = {};
  EXPECT_EQ(CreateCudaBackend(missing, options).status().code(),
            absl::StatusCode::kInvalidArgument);
  options.kv_cache.num_blocks = 0;
  options.kv_cache_fraction = 0;
  EXPECT_EQ(CreateCudaBackend(w, options).status().code(), absl::StatusCode::kInvalidArgument);
}

// Without num_blocks the pool takes kv_cache_bytes (or a share of free memory), whole blocks.
TEST(CudaBackendTest, PoolSizedFromMemory) {
  KVC_REQUIRE_CUDA_DEVICE();
  const model::ModelWeights w = cpu::MakeRandomModel(cpu::TinyConfig(Architecture::kLlama), 1);
  CudaBackendOptions options;
  options.kv_cache_bytes = 8 << 20;
  options.log = [](const std::string&) {};
  absl::StatusOr<std::unique_ptr<Backend>> backend = CreateCudaBackend(w, options);
  ASSERT_TRUE(backend.ok()) << backend.status();
  const size_t block_bytes = w.config.KvBytesPerToken(DType::kBF16) * 16;
  EXPECT_EQ((*backend)->kv_cache_options().num_blocks, int((8 << 20) / block_bytes));
  options.kv_cache_bytes = 0;
  options.kv_cache_fraction = 0.01;
  backend = CreateCudaBackend(w, options);
  ASSERT_TRUE(backend.ok()) << backend.status();
  EXPECT_GT((*backend)->kv_cache_options().num_blocks, 0);
}

// Where no GPU is visible (CI), creating the backend is refused with a precise status.
TEST(CudaBackendTest, RefusesWithoutADevice) {
  const absl::Status device = CudaDeviceStatus();
  if (device.ok()) GTEST_SKIP() << "a GPU is visible";
  EXPECT_EQ(device.code(), absl::StatusCode::kFailedPrecondition);
  const model::ModelWeights w = cpu::MakeRandomModel(cpu::TinyConfig(Architecture::kLlama), 1);
  CudaBackendOptions options;
  options.kv_cache.num_blocks = 4;
  const absl::Status created = CreateCudaBackend(w, options).status();
  EXPECT_EQ(created.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(created.message(), device.message());
  EXPECT_NE(CudaDeviceDescription().find("CUDA"), std::string::npos);
}

}  // namespace
}  // namespace kvc::backend
