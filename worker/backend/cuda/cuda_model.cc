#include "worker/backend/cuda/cuda_model.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "worker/backend/cpu/rope.h"
#include "worker/backend/cuda/cuda_check.h"
#include "worker/backend/cuda/device_weights.h"
#include "worker/backend/cuda/gemm.h"
#include "worker/backend/cuda/kernels.h"
#include "worker/backend/cuda/paged_attention.h"
#include "worker/backend/cuda/sampling.h"
#include "worker/backend/cuda/step_plan.h"
#include "worker/model/dtype_convert.h"

namespace kvc::backend::cuda {
namespace {

using model::DType;

// The decode kernel puts sequences on the grid's y dimension.
constexpr int kMaxSequencesPerStep = 65535;
// Block-table entries per sequence that the first step buffer has room for (it grows).
constexpr int kInitialBlocksPerSequence = 64;

#define KVC_RETURN_IF_ERROR(expr)                                              \
  do {                                                                         \
    if (absl::Status kvc_status = (expr); !kvc_status.ok()) return kvc_status; \
  } while (false)

// The stream, destroyed after everything that enqueues on it (declared first in CudaModel).
struct Stream {
  cudaStream_t stream = nullptr;
  ~Stream() {
    if (stream != nullptr) (void)cudaStreamDestroy(stream);
  }
};

// Per-step device buffers, sized for `tokens` new tokens, `rows` logits rows and `seqs`
// sequences, and the step's packed metadata (device and page-locked host copy).
struct Scratch {
  int tokens = 0, rows = 0, seqs = 0;
  size_t step_bytes = 0;
  DeviceBuffer x, xn, qkv, attn, gate_up, act, rope_cos, rope_sin, logits, sample_weights,
      sampled_tokens, sampled_logprobs, decode_workspace, step;
  PinnedBuffer host_step, host_sampled;
};

absl::Status ValidateSampling(std::span<const TokenSampling> sampling, int num_sequences) {
  if (int(sampling.size()) != num_sequences) {
    return absl::InvalidArgumentError(absl::StrCat("sampling has ", sampling.size(),
                                                   " entries for ", num_sequences, " sequences"));
  }
  for (const TokenSampling& t : sampling) {
    if (!(t.temperature >= 0.0f) || !std::isfinite(t.temperature) ||
        !(t.top_p > 0.0f && t.top_p <= 1.0f) || t.top_k < 0) {
      return absl::InvalidArgumentError(absl::StrCat("sampling out of range: temperature ",
                                                     t.temperature, ", top_p ", t.top_p, ", top_k ",
                                                     t.top_k));
    }
  }
  return absl::OkStatus();
}

// Thread-safety: as Backend, one calling thread at a time (any thread: every entry point
// selects the device first). All device work runs on the model's own stream.
class CudaModel final : public Backend {
 public:
  CudaModel(const model::ModelConfig& config, const CudaBackendOptions& options)
      : cfg_(config), kv_options_(options.kv_cache), options_(options) {}

  ~CudaModel() override {
    (void)cudaSetDevice(options_.device);
    if (stream_.stream != nullptr) (void)cudaStreamSynchronize(stream_.stream);
    DropGraphs();
  }

  absl::Status Init(const model::ModelWeights& weights);

  const model::ModelConfig& config() const override { return cfg_; }
  const KvCacheOptions& kv_cache_options() const override { return kv_options_; }

  absl::Status Forward(const ForwardBatch& batch, std::vector<float>* logits) override {
    KVC_RETURN_IF_ERROR(Run(batch, {}, /*sample=*/false));
    const StepPlan& plan = last_plan_;
    logits->resize(size_t(plan.num_rows) * cfg_.vocab_size);
    KVC_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(logits->data(), scratch_.logits.data(),
                                             logits->size() * sizeof(float), cudaMemcpyDeviceToHost,
                                             stream_.stream));
    KVC_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_.stream));
    return absl::OkStatus();
  }

  bool SamplesTokens() const override { return true; }

  absl::Status ForwardAndSample(const ForwardBatch& batch, std::span<const TokenSampling> sampling,
                                SampledTokens* out) override {
    KVC_RETURN_IF_ERROR(ValidateSampling(sampling, batch.num_sequences()));
    KVC_RETURN_IF_ERROR(Run(batch, sampling, /*sample=*/true));
    const int n = last_plan_.num_seqs;
    int32_t* host_tokens = scratch_.host_sampled.as<int32_t>();
    float* host_logprobs = reinterpret_cast<float*>(host_tokens + scratch_.seqs);
    KVC_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(host_tokens, scratch_.sampled_tokens.data(),
                                             n * sizeof(int32_t), cudaMemcpyDeviceToHost,
                                             stream_.stream));
    KVC_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(host_logprobs, scratch_.sampled_logprobs.data(),
                                             n * sizeof(float), cudaMemcpyDeviceToHost,
                                             stream_.stream));
    KVC_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_.stream));
    out->token_ids.assign(host_tokens, host_tokens + n);
    out->logprobs.assign(host_logprobs, host_logprobs + n);
    return absl::OkStatus();
  }

  absl::Status ReadKvBlock(int layer, int block, std::vector<float>* k,
                           std::vector<float>* v) const override;
  absl::Status CopyKvBlock(int src, int dst) override;

 private:
  void Log(const std::string& line) const {
    if (options_.log) {
      options_.log(line);
    } else {
      std::fprintf(stderr, "cuda backend: %s\n", line.c_str());
    }
  }
  // K (or V) bytes of one block in one layer.
  size_t KvBlockBytes() const {
    return size_t(kv_options_.block_size) * cfg_.num_kv_heads * cfg_.head_dim *
           model::DTypeSize(kv_options_.dtype);
  }
  absl::Status Run(const ForwardBatch& batch, std::span<const TokenSampling> sampling, bool sample);
  absl::Status Reserve(int tokens, int rows, int seqs, size_t step_bytes);
  absl::Status Launch(const StepPlan& plan);
  absl::Status Enqueue(const StepPlan& plan);
  void DropGraphs() {
    for (auto& [key, exec] : graphs_) (void)cudaGraphExecDestroy(exec);
    graphs_.clear();
    seen_.clear();
  }

  const model::ModelConfig cfg_;
  KvCacheOptions kv_options_;
  const CudaBackendOptions options_;
  Stream stream_;  // first: destroyed last
  int num_sms_ = 0;
  Gemm gemm_;
  DeviceWeights weights_;
  DeviceBuffer inv_freq_;
  DeviceBuffer kv_pool_;
  std::vector<PagedKv> kv_layers_;
  int tokens_per_tile_ = 0;
  Scratch scratch_;
  StepPlan last_plan_;
  // Decode-step graphs by (batch size, sampling). A key is captured the second time it comes
  // (the first run is eager: it loads the kernels and lets cuBLAS settle); a key whose capture
  // failed stays eager.
  std::map<std::pair<int, bool>, cudaGraphExec_t> graphs_;
  std::set<std::pair<int, bool>> seen_, uncapturable_;
};

absl::Status CudaModel::Init(const model::ModelWeights& weights) {
  const int device = options_.device;
  KVC_CUDA_RETURN_IF_ERROR(cudaSetDevice(device));
  KVC_CUDA_RETURN_IF_ERROR(
      cudaDeviceGetAttribute(&num_sms_, cudaDevAttrMultiProcessorCount, device));
  KVC_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&stream_.stream, cudaStreamNonBlocking));
  KVC_RETURN_IF_ERROR(gemm_.Init(stream_.stream));
  KVC_RETURN_IF_ERROR(
      weights_.Upload(weights, options_.progress, [this](const std::string& line) { Log(line); }));

  const std::vector<double> inv_freq = cpu::RopeInverseFrequencies(cfg_);
  KVC_RETURN_IF_ERROR(inv_freq_.Allocate(inv_freq.size() * sizeof(double)));
  KVC_CUDA_RETURN_IF_ERROR(cudaMemcpy(inv_freq_.data(), inv_freq.data(),
                                      inv_freq.size() * sizeof(double), cudaMemcpyHostToDevice));
  tokens_per_tile_ = PrefillTokensPerTile(cfg_.num_heads, cfg_.num_kv_heads);

  // Scratch before the pool, so that sizing the pool from free memory leaves room for it.
  const int seqs = std::clamp(options_.max_batch_sequences, 1, kMaxSequencesPerStep);
  const int tokens = std::max(seqs, options_.max_batch_tokens);
  KVC_RETURN_IF_ERROR(
      Reserve(tokens, seqs, seqs, StepBytesBound(tokens, seqs, seqs * kInitialBlocksPerSequence)));

  const size_t block_bytes = 2 * size_t(cfg_.num_layers) * KvBlockBytes();  // all layers, K + V
  if (kv_options_.num_blocks <= 0) {
    size_t budget = options_.kv_cache_bytes;
    if (budget == 0) {
      size_t free_bytes = 0, total_bytes = 0;
      KVC_CUDA_RETURN_IF_ERROR(cudaMemGetInfo(&free_bytes, &total_bytes));
      budget = size_t(double(free_bytes) * options_.kv_cache_fraction);
    }
    const size_t blocks = std::min(budget / block_bytes, size_t(1) << 30);
    if (blocks < 1) {
      return absl::ResourceExhaustedError(absl::StrCat("a KV cache of ", budget,
                                                       " bytes holds no block of ", block_bytes,
                                                       " bytes (all layers, K and V)"));
    }
    kv_options_.num_blocks = int(blocks);
  }
  if (absl::Status s = kv_pool_.Allocate(size_t(kv_options_.num_blocks) * block_bytes); !s.ok()) {
    return absl::ResourceExhaustedError(absl::StrCat("the KV pool of ", kv_options_.num_blocks,
                                                     " blocks does not fit: ", s.message()));
  }
  // Zeroed like the CPU backend's fresh mapping: never-written slots read as zero.
  KVC_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(kv_pool_.data(), 0, kv_pool_.bytes(), stream_.stream));
  KVC_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_.stream));
  const size_t layer_bytes = size_t(kv_options_.num_blocks) * KvBlockBytes();
  for (int l = 0; l < cfg_.num_layers; ++l) {
    uint8_t* base = kv_pool_.as<uint8_t>() + 2 * size_t(l) * layer_bytes;
    kv_layers_.push_back(PagedKv{.k = base,
                                 .v = base + layer_bytes,
                                 .dtype = kv_options_.dtype,
                                 .block_size = kv_options_.block_size,
                                 .num_kv_heads = cfg_.num_kv_heads,
                                 .head_dim = cfg_.head_dim});
  }
  Log(absl::StrCat("weights ", weights_.bytes() >> 20, " MiB (", model::DTypeName(weights_.dtype()),
                   "), KV pool ", kv_pool_.bytes() >> 20, " MiB = ", kv_options_.num_blocks,
                   " blocks of ", kv_options_.block_size, " tokens (",
                   model::DTypeName(kv_options_.dtype), ")"));
  return absl::OkStatus();
}

absl::Status CudaModel::Reserve(int tokens, int rows, int seqs, size_t step_bytes) {
  Scratch& s = scratch_;
  rows = std::max(rows, seqs);
  if (tokens <= s.tokens && rows <= s.rows && seqs <= s.seqs && step_bytes <= s.step_bytes) {
    return absl::OkStatus();
  }
  // Buffers about to be freed may still be read by queued work, and graphs point at them.
  KVC_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_.stream));
  DropGraphs();
  const int new_tokens = std::max(tokens, s.tokens), new_rows = std::max(rows, s.rows),
            new_seqs = std::max(seqs, s.seqs);
  const size_t new_step = std::max(step_bytes + step_bytes / 2, s.step_bytes);
  s.tokens = s.rows = s.seqs = 0;  // until every buffer below is in place
  s.step_bytes = 0;
  const size_t t = size_t(new_tokens), act = model::DTypeSize(weights_.dtype());
  const size_t h = cfg_.hidden_size, hd = cfg_.head_dim, inter = cfg_.intermediate_size;
  const size_t q_dim = size_t(cfg_.num_heads) * hd;
  const size_t qkv_dim = size_t(cfg_.num_heads + 2 * cfg_.num_kv_heads) * hd;
  const size_t vocab = cfg_.vocab_size, f32 = sizeof(float);
  KVC_RETURN_IF_ERROR(s.x.Allocate(t * h * f32));
  KVC_RETURN_IF_ERROR(s.xn.Allocate(t * h * act));
  KVC_RETURN_IF_ERROR(s.qkv.Allocate(t * qkv_dim * f32));
  KVC_RETURN_IF_ERROR(s.attn.Allocate(t * q_dim * act));
  KVC_RETURN_IF_ERROR(s.gate_up.Allocate(t * 2 * inter * f32));
  KVC_RETURN_IF_ERROR(s.act.Allocate(t * inter * act));
  KVC_RETURN_IF_ERROR(s.rope_cos.Allocate(t * (hd / 2) * f32));
  KVC_RETURN_IF_ERROR(s.rope_sin.Allocate(t * (hd / 2) * f32));
  KVC_RETURN_IF_ERROR(s.logits.Allocate(size_t(new_rows) * vocab * f32));
  KVC_RETURN_IF_ERROR(s.sample_weights.Allocate(size_t(new_seqs) * vocab * f32));
  KVC_RETURN_IF_ERROR(s.sampled_tokens.Allocate(size_t(new_seqs) * sizeof(int32_t)));
  KVC_RETURN_IF_ERROR(s.sampled_logprobs.Allocate(size_t(new_seqs) * f32));
  KVC_RETURN_IF_ERROR(s.decode_workspace.Allocate(
      DecodeWorkspaceFloats(new_seqs, cfg_.num_heads, cfg_.head_dim, kMaxDecodeSplits) * f32));
  KVC_RETURN_IF_ERROR(s.step.Allocate(new_step));
  KVC_RETURN_IF_ERROR(s.host_step.Allocate(new_step));
  KVC_RETURN_IF_ERROR(s.host_sampled.Allocate(size_t(new_seqs) * (sizeof(int32_t) + f32)));
  s.tokens = new_tokens;
  s.rows = new_rows;
  s.seqs = new_seqs;
  s.step_bytes = new_step;
  return absl::OkStatus();
}

absl::Status CudaModel::Run(const ForwardBatch& batch, std::span<const TokenSampling> sampling,
                            bool sample) {
  KVC_CUDA_RETURN_IF_ERROR(cudaSetDevice(options_.device));
  KVC_RETURN_IF_ERROR(ValidateForwardBatch(batch, cfg_.vocab_size, kv_options_));
  if (batch.num_sequences() > kMaxSequencesPerStep) {
    return absl::InvalidArgumentError(absl::StrCat("a step holds at most ", kMaxSequencesPerStep,
                                                   " sequences, this one ", batch.num_sequences()));
  }
  const StepPlan plan = PlanStep(batch, tokens_per_tile_, sample);
  KVC_RETURN_IF_ERROR(Reserve(plan.num_tokens, plan.num_rows, plan.num_seqs, plan.bytes));
  // The previous step synchronized before returning, so the host copy is free to refill.
  PackStep(batch, sampling, plan, tokens_per_tile_, scratch_.host_step.as<uint8_t>());
  KVC_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(scratch_.step.data(), scratch_.host_step.data(),
                                           plan.bytes, cudaMemcpyHostToDevice, stream_.stream));
  last_plan_ = plan;
  return Launch(plan);
}

absl::Status CudaModel::Launch(const StepPlan& plan) {
  if (!plan.all_decode || plan.num_seqs > options_.max_graph_batch) return Enqueue(plan);
  const std::pair<int, bool> key(plan.num_seqs, plan.sample);
  if (auto it = graphs_.find(key); it != graphs_.end()) {
    KVC_CUDA_RETURN_IF_ERROR(cudaGraphLaunch(it->second, stream_.stream));
    return absl::OkStatus();
  }
  if (uncapturable_.contains(key) || seen_.insert(key).second) return Enqueue(plan);

  KVC_CUDA_RETURN_IF_ERROR(
      cudaStreamBeginCapture(stream_.stream, cudaStreamCaptureModeThreadLocal));
  const absl::Status enqueued = Enqueue(plan);
  cudaGraph_t graph = nullptr;
  const cudaError_t ended = cudaStreamEndCapture(stream_.stream, &graph);
  cudaGraphExec_t exec = nullptr;
  cudaError_t instantiated = cudaErrorUnknown;
  if (enqueued.ok() && ended == cudaSuccess) instantiated = cudaGraphInstantiate(&exec, graph, 0);
  if (graph != nullptr) (void)cudaGraphDestroy(graph);
  if (!enqueued.ok() || ended != cudaSuccess || instantiated != cudaSuccess) {
    (void)cudaGetLastError();  // capture errors are not sticky; the eager run below reports
    uncapturable_.insert(key);
    Log(absl::StrCat("decode steps of ", key.first, " sequences run without a CUDA graph: ",
                     !enqueued.ok()         ? enqueued.ToString()
                     : ended != cudaSuccess ? cudaGetErrorString(ended)
                                            : cudaGetErrorString(instantiated)));
    return Enqueue(plan);
  }
  graphs_[key] = exec;
  KVC_CUDA_RETURN_IF_ERROR(cudaGraphLaunch(exec, stream_.stream));
  return absl::OkStatus();
}

absl::Status CudaModel::Enqueue(const StepPlan& plan) {
  cudaStream_t stream = stream_.stream;
  const uint8_t* step = scratch_.step.as<uint8_t>();
  const auto i32 = [&](size_t offset) { return reinterpret_cast<const int32_t*>(step + offset); };
  const int m = plan.num_tokens;
  const int h = cfg_.hidden_size, hd = cfg_.head_dim, inter = cfg_.intermediate_size;
  const int heads = cfg_.num_heads, kv_heads = cfg_.num_kv_heads;
  const int q_dim = heads * hd, qkv_dim = (heads + 2 * kv_heads) * hd;
  const DType act = weights_.dtype();
  const float eps = float(cfg_.rms_norm_eps);
  float* x = scratch_.x.as<float>();
  void* xn = scratch_.xn.data();
  float* qkv = scratch_.qkv.as<float>();
  float* gate_up = scratch_.gate_up.as<float>();
  float* rope_cos = scratch_.rope_cos.as<float>();
  float* rope_sin = scratch_.rope_sin.as<float>();

  KVC_CUDA_RETURN_IF_ERROR(
      LaunchEmbedding(i32(plan.token_ids), m, weights_.embed(), act, h, x, stream));
  KVC_CUDA_RETURN_IF_ERROR(LaunchRopeTable(i32(plan.positions), m, inv_freq_.as<double>(), hd / 2,
                                           rope_cos, rope_sin, stream));
  const int splits = DecodeSplits(plan.num_decode, kv_heads, num_sms_);
  const AttentionParams attention{.q = qkv,
                                  .q_stride = qkv_dim,
                                  .num_heads = heads,
                                  .scale = 1.0f / std::sqrt(float(hd)),
                                  .sliding_window = cfg_.sliding_window,
                                  .qo_indptr = i32(plan.qo_indptr),
                                  .context_lens = i32(plan.context_lens),
                                  .kv_indptr = i32(plan.kv_indptr),
                                  .kv_indices = i32(plan.kv_indices),
                                  .out = scratch_.attn.data(),
                                  .out_dtype = act,
                                  .out_stride = q_dim};
  for (int l = 0; l < cfg_.num_layers; ++l) {
    const DeviceLayer& w = weights_.layers()[l];
    KVC_CUDA_RETURN_IF_ERROR(
        LaunchRmsNorm(x, nullptr, m, h, nullptr, w.input_norm, eps, xn, act, stream));
    KVC_RETURN_IF_ERROR(gemm_.Linear(xn, m, h, w.qkv, qkv_dim, act, qkv, false));
    const QkvParams qkv_params{.qkv = qkv,
                               .num_tokens = m,
                               .num_heads = heads,
                               .num_kv_heads = kv_heads,
                               .head_dim = hd,
                               .q_bias = w.q_bias,
                               .k_bias = w.k_bias,
                               .v_bias = w.v_bias,
                               .q_norm = w.q_norm,
                               .k_norm = w.k_norm,
                               .eps = eps,
                               .rope_cos = rope_cos,
                               .rope_sin = rope_sin,
                               .positions = i32(plan.positions),
                               .token_seq = i32(plan.token_seq),
                               .kv_indptr = i32(plan.kv_indptr),
                               .kv_indices = i32(plan.kv_indices)};
    KVC_CUDA_RETURN_IF_ERROR(LaunchQkvPostprocess(qkv_params, kv_layers_[l], stream));
    if (plan.num_decode > 0) {
      KVC_CUDA_RETURN_IF_ERROR(LaunchPagedDecode(
          attention, kv_layers_[l], plan.all_decode ? nullptr : i32(plan.decode_seqs),
          plan.num_decode, splits, scratch_.decode_workspace.as<float>(), stream));
    }
    if (plan.num_tiles > 0) {
      KVC_CUDA_RETURN_IF_ERROR(LaunchPagedPrefill(
          attention, kv_layers_[l], reinterpret_cast<const PrefillTile*>(step + plan.tiles),
          plan.num_tiles, stream));
    }
    KVC_RETURN_IF_ERROR(gemm_.Linear(scratch_.attn.data(), m, q_dim, w.o, h, act, x, true));
    KVC_CUDA_RETURN_IF_ERROR(
        LaunchRmsNorm(x, nullptr, m, h, w.o_bias, w.post_norm, eps, xn, act, stream));
    KVC_RETURN_IF_ERROR(gemm_.Linear(xn, m, h, w.gate_up, 2 * inter, act, gate_up, false));
    KVC_CUDA_RETURN_IF_ERROR(LaunchSwiGlu(gate_up, m, inter, scratch_.act.data(), act, stream));
    KVC_RETURN_IF_ERROR(gemm_.Linear(scratch_.act.data(), m, inter, w.down, h, act, x, true));
  }
  KVC_CUDA_RETURN_IF_ERROR(LaunchRmsNorm(x, i32(plan.logit_rows), plan.num_rows, h, nullptr,
                                         weights_.final_norm(), eps, xn, act, stream));
  float* logits = scratch_.logits.as<float>();
  KVC_RETURN_IF_ERROR(
      gemm_.Linear(xn, plan.num_rows, h, weights_.lm_head(), cfg_.vocab_size, act, logits, false));
  if (plan.sample) {
    KVC_CUDA_RETURN_IF_ERROR(LaunchSampleTokens(
        logits, plan.num_rows, cfg_.vocab_size,
        reinterpret_cast<const SampleParams*>(step + plan.params),
        scratch_.sample_weights.as<float>(), scratch_.sampled_tokens.as<int32_t>(),
        scratch_.sampled_logprobs.as<float>(), stream));
  }
  return absl::OkStatus();
}

absl::Status CudaModel::ReadKvBlock(int layer, int block, std::vector<float>* k,
                                    std::vector<float>* v) const {
  if (layer < 0 || layer >= cfg_.num_layers || block < 0 || block >= kv_options_.num_blocks) {
    return absl::InvalidArgumentError("layer or block out of range");
  }
  KVC_CUDA_RETURN_IF_ERROR(cudaSetDevice(options_.device));
  KVC_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_.stream));
  const size_t bytes = KvBlockBytes();
  const size_t elements = bytes / model::DTypeSize(kv_options_.dtype);
  std::vector<uint8_t> raw(bytes);
  for (const auto& [src, dst] :
       {std::pair(kv_layers_[layer].k, k), std::pair(kv_layers_[layer].v, v)}) {
    KVC_CUDA_RETURN_IF_ERROR(cudaMemcpy(raw.data(),
                                        static_cast<const uint8_t*>(src) + size_t(block) * bytes,
                                        bytes, cudaMemcpyDeviceToHost));
    dst->resize(elements);
    for (size_t i = 0; i < elements; ++i) {
      (*dst)[i] = model::LoadAsFloat(raw.data(), kv_options_.dtype, int64_t(i));
    }
  }
  return absl::OkStatus();
}

absl::Status CudaModel::CopyKvBlock(int src, int dst) {
  if (src < 0 || src >= kv_options_.num_blocks || dst < 0 || dst >= kv_options_.num_blocks) {
    return absl::InvalidArgumentError("block out of range");
  }
  if (src == dst) return absl::OkStatus();
  KVC_CUDA_RETURN_IF_ERROR(cudaSetDevice(options_.device));
  const size_t bytes = KvBlockBytes();
  for (const PagedKv& kv : kv_layers_) {
    for (void* base : {kv.k, kv.v}) {
      uint8_t* bytes_base = static_cast<uint8_t*>(base);
      KVC_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(bytes_base + size_t(dst) * bytes,
                                               bytes_base + size_t(src) * bytes, bytes,
                                               cudaMemcpyDeviceToDevice, stream_.stream));
    }
  }
  KVC_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_.stream));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Backend>> NewCudaModel(const model::ModelWeights& weights,
                                                      const CudaBackendOptions& options) {
  auto model = std::make_unique<CudaModel>(weights.config, options);
  KVC_RETURN_IF_ERROR(model->Init(weights));
  return std::unique_ptr<Backend>(std::move(model));
}

}  // namespace kvc::backend::cuda
