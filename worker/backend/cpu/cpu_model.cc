#include "worker/backend/cpu/cpu_model.h"

#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <map>
#include <vector>

#include "absl/base/const_init.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "worker/backend/cpu/attention.h"
#include "worker/backend/cpu/kernels.h"
#include "worker/backend/cpu/rope.h"
#include "worker/backend/cpu/thread_pool.h"

namespace kvc::backend::cpu {
namespace {

using model::DType;
using model::TensorView;

// Small per-layer vectors (norm weights, biases) as f32: a few KB, read once per token, so
// converting them up front costs nothing and keeps the kernels simple.
std::vector<float> SmallToF32(const TensorView& t) {
  std::vector<float> out(size_t(t.numel()));
  if (!t.empty()) ToF32(t.data, t.dtype, t.numel(), out.data());
  return out;
}

struct SmallLayerParams {
  std::vector<float> input_norm, post_norm, q_bias, k_bias, v_bias, q_norm, k_norm, o_bias;
};

// The KV pool: one anonymous mapping (zero pages until touched), apart from the weights.
// Thread-safety: owns memory only; the CpuModel that holds it decides who writes where.
class KvPool {
 public:
  KvPool() = default;
  KvPool(const KvPool&) = delete;
  KvPool& operator=(const KvPool&) = delete;
  ~KvPool() {
    if (base_ != nullptr) munmap(base_, bytes_);
  }
  absl::Status Allocate(size_t bytes) {
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
      return absl::ResourceExhaustedError(absl::StrCat("cannot map ", bytes, " bytes of KV pool"));
    }
    base_ = static_cast<uint8_t*>(p);
    bytes_ = bytes;
    return absl::OkStatus();
  }
  uint8_t* base() const { return base_; }

 private:
  uint8_t* base_ = nullptr;
  size_t bytes_ = 0;
};

// Thread-safety: as Backend (one calling thread); the pool's threads only run inside Forward.
// Work in a step is split into chunks that any of the pool's threads may take, so no result
// depends on which thread computed it.
class CpuModel final : public Backend {
 public:
  CpuModel(const model::ModelWeights& weights, const CpuBackendOptions& options)
      : weights_(weights),
        cfg_(weights_.config),
        kv_options_(options.kv_cache),
        pool_(options.num_threads),
        memory_bound_threads_option_(options.memory_bound_threads),
        inv_freq_(RopeInverseFrequencies(cfg_)),
        final_norm_(SmallToF32(weights_.norm)),
        attention_scratch_(pool_.num_threads()) {
    for (const model::LayerWeights& l : weights_.layers) {
      small_.push_back({SmallToF32(l.input_layernorm), SmallToF32(l.post_attention_layernorm),
                        SmallToF32(l.q_bias), SmallToF32(l.k_bias), SmallToF32(l.v_bias),
                        SmallToF32(l.q_norm), SmallToF32(l.k_norm), SmallToF32(l.o_bias)});
    }
  }

  absl::Status Init() {
    memory_bound_threads_ = memory_bound_threads_option_ < 0 ? CachedMemoryBoundThreads()
                            : memory_bound_threads_option_ == 0
                                ? pool_.num_threads()
                                : std::min(memory_bound_threads_option_, pool_.num_threads());
    block_elems_ = size_t(kv_options_.block_size) * cfg_.num_kv_heads * cfg_.head_dim;
    const size_t layer_bytes =
        size_t(kv_options_.num_blocks) * block_elems_ * ElementBytes(kv_options_.dtype);
    if (absl::Status s = pool_memory_.Allocate(2 * layer_bytes * cfg_.num_layers); !s.ok()) {
      return s;
    }
    for (int l = 0; l < cfg_.num_layers; ++l) {
      PagedKvLayer kv;
      kv.k = pool_memory_.base() + (2 * size_t(l)) * layer_bytes;
      kv.v = pool_memory_.base() + (2 * size_t(l) + 1) * layer_bytes;
      kv.dtype = kv_options_.dtype;
      kv.block_size = kv_options_.block_size;
      kv.num_kv_heads = cfg_.num_kv_heads;
      kv.head_dim = cfg_.head_dim;
      kv_layers_.push_back(kv);
    }
    return absl::OkStatus();
  }

  const model::ModelConfig& config() const override { return cfg_; }
  const KvCacheOptions& kv_cache_options() const override { return kv_options_; }

  absl::Status Forward(const ForwardBatch& batch, std::vector<float>* logits) override;

  absl::Status ReadKvBlock(int layer, int block, std::vector<float>* k,
                           std::vector<float>* v) const override {
    if (layer < 0 || layer >= cfg_.num_layers || block < 0 || block >= kv_options_.num_blocks) {
      return absl::InvalidArgumentError("layer or block out of range");
    }
    const size_t offset = size_t(block) * block_elems_ * ElementBytes(kv_options_.dtype);
    k->resize(block_elems_);
    v->resize(block_elems_);
    ToF32(static_cast<uint8_t*>(kv_layers_[layer].k) + offset, kv_options_.dtype,
          int64_t(block_elems_), k->data());
    ToF32(static_cast<uint8_t*>(kv_layers_[layer].v) + offset, kv_options_.dtype,
          int64_t(block_elems_), v->data());
    return absl::OkStatus();
  }

  absl::Status CopyKvBlock(int src, int dst) override {
    if (src < 0 || src >= kv_options_.num_blocks || dst < 0 || dst >= kv_options_.num_blocks) {
      return absl::InvalidArgumentError("block out of range");
    }
    const size_t bytes = block_elems_ * ElementBytes(kv_options_.dtype);
    for (const PagedKvLayer& kv : kv_layers_) {
      for (void* base : {kv.k, kv.v}) {
        std::memmove(static_cast<uint8_t*>(base) + size_t(dst) * bytes,
                     static_cast<uint8_t*>(base) + size_t(src) * bytes, bytes);
      }
    }
    return absl::OkStatus();
  }

 private:
  absl::Status Validate(const ForwardBatch& batch) const;
  void Attention(int layer, const ForwardBatch& batch);
  void Mlp(int layer, int m);

  // Calls fn(thread_index, begin, end) over [0, n) in chunks that the pool's threads take as
  // they come: about 8 per thread, multiples of `granule`. Runs on the calling thread alone
  // when `work` (about one multiply-add per unit) is too small to pay for waking the others.
  template <typename F>
  void ParallelFor(int64_t n, int64_t granule, int64_t work, F&& fn, int max_threads = 1 << 30,
                   int chunks_per_thread = 8) {
    constexpr int64_t kMinParallelWork = int64_t(1) << 17;
    const int threads = std::min(max_threads, pool_.num_threads());
    if (work < kMinParallelWork || threads == 1) {
      fn(0, int64_t(0), n);
      return;
    }
    const int64_t per = (n / (chunks_per_thread * threads) + granule - 1) / granule * granule;
    pool_.ParallelFor(n, std::max(per, granule), fn, threads);
  }

  // Calls fn(begin, end) over row ranges (multiples of 16 rows) of a product over m tokens.
  // With one or two tokens the product is bound by memory, not arithmetic: it runs on
  // memory_bound_threads_, in finer chunks (the threads finish within a smaller chunk of each
  // other; measured ~10% faster decode than 8 chunks per thread).
  template <typename F>
  void ParallelRows(int64_t rows, int64_t k, int m, F&& fn) {
    const bool memory_bound = m <= 2;
    ParallelFor(
        rows, 16, rows * k * m, [&](int, int64_t begin, int64_t end) { fn(begin, end); },
        memory_bound ? memory_bound_threads_ : pool_.num_threads(), memory_bound ? 32 : 8);
  }

  // Picks memory_bound_threads_ (see CpuBackendOptions): sums a 64 MiB buffer, larger than
  // the caches, with one thread and with all, best of three passes each.
  // Measured once per process and thread count: the machine does not change between backends,
  // and tests create many.
  int CachedMemoryBoundThreads() {
    static absl::Mutex mutex(absl::kConstInit);
    static auto* measured = new std::map<int, int>();  // num_threads -> choice; never freed
    absl::MutexLock lock(&mutex);
    auto it = measured->find(pool_.num_threads());
    if (it == measured->end()) {
      it = measured->emplace(pool_.num_threads(), CalibrateMemoryBoundThreads()).first;
    }
    return it->second;
  }

  int CalibrateMemoryBoundThreads() {
    if (pool_.num_threads() == 1) return 1;
    const int64_t n = int64_t(8) << 20;
    std::vector<uint64_t> buffer(n, 1);
    std::vector<uint64_t> sums(pool_.num_threads() * 8, 0);  // a cache line per thread
    const auto best_seconds = [&](int threads) {
      double best = 1e30;
      for (int pass = 0; pass < 3; ++pass) {
        const auto start = std::chrono::steady_clock::now();
        pool_.ParallelFor(
            n, n / 64,
            [&](int tid, int64_t begin, int64_t end) {
              uint64_t sum = 0;
              for (int64_t i = begin; i < end; ++i) sum += buffer[i];
              sums[tid * 8] += sum;
            },
            threads);
        best = std::min(
            best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
      }
      return best;
    };
    const double one = best_seconds(1), all = best_seconds(pool_.num_threads());
    return all * 1.15 < one ? pool_.num_threads() : 1;
  }

  // out[t][r] (+)= x[t] . w[r] for all rows of w, rows split between the threads.
  void ParallelMatMul(const float* x, int m, const TensorView& w, float* out, bool accumulate) {
    const int64_t rows = w.shape[0], k = w.shape[1];
    ParallelRows(rows, k, m, [&](int64_t begin, int64_t end) {
      MatMul(x, k, m, w.data, w.dtype, k, begin, end, out, rows, accumulate);
    });
  }

  // Applies `fn(t)` to every token t < m, tokens split between the threads; `cost` is the
  // work per token in multiply-adds.
  template <typename F>
  void ParallelTokens(int m, int64_t cost, F&& fn) {
    ParallelFor(m, 1, m * cost, [&](int, int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t) fn(int(t));
    });
  }

  const model::ModelWeights weights_;
  const model::ModelConfig& cfg_;
  const KvCacheOptions kv_options_;
  ThreadPool pool_;
  const int memory_bound_threads_option_;
  const std::vector<double> inv_freq_;
  const std::vector<float> final_norm_;
  std::vector<SmallLayerParams> small_;
  size_t block_elems_ = 0;  // elements of K (or V) per block and layer
  int memory_bound_threads_ = 1;
  KvPool pool_memory_;
  std::vector<PagedKvLayer> kv_layers_;

  // Per-step scratch, reused between steps; [tokens][features] row-major.
  std::vector<float> x_, xn_, q_, k_, v_, attn_, gate_, up_, rope_cos_, rope_sin_;
  std::vector<int32_t> token_sequence_;                // sequence index of each new token
  std::vector<std::vector<float>> attention_scratch_;  // per thread
};

absl::Status CpuModel::Validate(const ForwardBatch& batch) const {
  return ValidateForwardBatch(batch, cfg_.vocab_size, kv_options_);
}

absl::Status CpuModel::Forward(const ForwardBatch& batch, std::vector<float>* logits) {
  if (absl::Status s = Validate(batch); !s.ok()) return s;
  const int m = batch.num_tokens();
  const int64_t h = cfg_.hidden_size, hd = cfg_.head_dim;
  const int64_t q_dim = int64_t(cfg_.num_heads) * hd, kv_dim = int64_t(cfg_.num_kv_heads) * hd;
  x_.resize(size_t(m) * h);
  xn_.resize(size_t(m) * h);
  q_.resize(size_t(m) * q_dim);
  k_.resize(size_t(m) * kv_dim);
  v_.resize(size_t(m) * kv_dim);
  attn_.resize(size_t(m) * q_dim);
  gate_.resize(size_t(m) * cfg_.intermediate_size);
  up_.resize(size_t(m) * cfg_.intermediate_size);
  rope_cos_.resize(size_t(m) * hd / 2);
  rope_sin_.resize(size_t(m) * hd / 2);
  token_sequence_.resize(m);
  for (int s = 0, t = 0; s < batch.num_sequences(); ++s) {
    for (int i = 0; i < batch.num_new_tokens[s]; ++i) token_sequence_[t++] = s;
  }

  const TensorView& embed = weights_.embed_tokens;
  const size_t embed_row_bytes = size_t(h) * ElementBytes(embed.dtype);
  ParallelTokens(m, h + hd * 8, [&](int t) {
    ToF32(static_cast<const uint8_t*>(embed.data) + size_t(batch.token_ids[t]) * embed_row_bytes,
          embed.dtype, h, &x_[size_t(t) * h]);
    RopeAngles(inv_freq_, batch.positions[t], &rope_cos_[size_t(t) * hd / 2],
               &rope_sin_[size_t(t) * hd / 2]);
  });

  const float eps = float(cfg_.rms_norm_eps);
  for (int l = 0; l < cfg_.num_layers; ++l) {
    const model::LayerWeights& w = weights_.layers[l];
    ParallelTokens(m, 2 * h, [&](int t) {
      RmsNorm(&x_[size_t(t) * h], small_[l].input_norm.data(), h, eps, &xn_[size_t(t) * h]);
    });
    // q, k and v in one parallel region: their rows are split as one range of rows.
    ParallelRows(q_dim + 2 * kv_dim, h, m, [&](int64_t rb, int64_t re) {
      const auto part = [&](const TensorView& wt, int64_t first, int64_t rows, float* out) {
        const int64_t b = std::max(rb - first, int64_t(0));
        const int64_t e = std::min(re - first, rows);
        if (b < e) MatMul(xn_.data(), h, m, wt.data, wt.dtype, h, b, e, out, rows, false);
      };
      part(w.q_proj, 0, q_dim, q_.data());
      part(w.k_proj, q_dim, kv_dim, k_.data());
      part(w.v_proj, q_dim + kv_dim, kv_dim, v_.data());
    });
    Attention(l, batch);
    ParallelMatMul(attn_.data(), m, w.o_proj, x_.data(), /*accumulate=*/true);
    ParallelTokens(m, 3 * h, [&](int t) {
      if (!w.o_bias.empty()) AddInPlace(&x_[size_t(t) * h], small_[l].o_bias.data(), h);
      RmsNorm(&x_[size_t(t) * h], small_[l].post_norm.data(), h, eps, &xn_[size_t(t) * h]);
    });
    Mlp(l, m);
  }

  // Final norm and lm_head only for the rows that return logits.
  std::vector<int> rows;
  if (batch.all_logits) {
    for (int t = 0; t < m; ++t) rows.push_back(t);
  } else {
    for (int s = 0, t = 0; s < batch.num_sequences(); ++s) {
      t += batch.num_new_tokens[s];
      rows.push_back(t - 1);
    }
  }
  const int r = int(rows.size());
  for (int i = 0; i < r; ++i) {
    RmsNorm(&x_[size_t(rows[i]) * h], final_norm_.data(), h, eps, &xn_[size_t(i) * h]);
  }
  logits->resize(size_t(r) * cfg_.vocab_size);
  ParallelMatMul(xn_.data(), r, weights_.lm_head, logits->data(), false);
  return absl::OkStatus();
}

void CpuModel::Attention(int layer, const ForwardBatch& batch) {
  const model::LayerWeights& w = weights_.layers[layer];
  const SmallLayerParams& p = small_[layer];
  const PagedKvLayer& kv = kv_layers_[layer];
  const int m = batch.num_tokens();
  const int hd = cfg_.head_dim, heads = cfg_.num_heads, kv_heads = cfg_.num_kv_heads;
  const int64_t q_dim = int64_t(heads) * hd, kv_dim = int64_t(kv_heads) * hd;
  const float eps = float(cfg_.rms_norm_eps);
  // Bias, per-head norm, RoPE, then the KV write: every new token's K/V must be in the cache
  // before any token attends (a prefill token attends to the new tokens before it).
  ParallelTokens(m, 4 * (q_dim + kv_dim), [&](int t) {
    float* q = &q_[size_t(t) * q_dim];
    float* k = &k_[size_t(t) * kv_dim];
    float* v = &v_[size_t(t) * kv_dim];
    if (!w.q_bias.empty()) {
      AddInPlace(q, p.q_bias.data(), q_dim);
      AddInPlace(k, p.k_bias.data(), kv_dim);
      AddInPlace(v, p.v_bias.data(), kv_dim);
    }
    if (!w.q_norm.empty()) {
      for (int i = 0; i < heads; ++i) RmsNorm(q + i * hd, p.q_norm.data(), hd, eps, q + i * hd);
      for (int i = 0; i < kv_heads; ++i) {
        RmsNorm(k + i * hd, p.k_norm.data(), hd, eps, k + i * hd);
      }
    }
    const float* cos = &rope_cos_[size_t(t) * hd / 2];
    const float* sin = &rope_sin_[size_t(t) * hd / 2];
    ApplyRope(q, heads, hd, cos, sin);
    ApplyRope(k, kv_heads, hd, cos, sin);
    const int s = token_sequence_[t];
    WriteKv(kv, &batch.block_indices[batch.block_indptr[s]], batch.positions[t], k, v);
  });

  // One work item per (token, KV head); taken dynamically since prefill items late in a long
  // prompt cost more than early ones.
  const int group = heads / kv_heads;
  const float scale = 1.0f / std::sqrt(float(hd));
  int max_context = 0;
  for (int c : batch.context_lens) max_context = std::max(max_context, c);
  const int64_t items = int64_t(m) * kv_heads;
  ParallelFor(items, 1, items * group * max_context * hd * 2,
              [&](int tid, int64_t begin, int64_t end) {
                std::vector<float>& scratch = attention_scratch_[tid];
                scratch.resize(size_t(group) * max_context);
                for (int64_t item = begin; item < end; ++item) {
                  const int t = int(item / kv_heads), g = int(item % kv_heads);
                  const int s = token_sequence_[t];
                  const size_t offset = size_t(t) * q_dim + size_t(g) * group * hd;
                  const int position = batch.positions[t];
                  // Mistral's sliding window: a token sees itself and the window - 1 tokens before
                  // it.
                  const int first =
                      cfg_.sliding_window > 0 ? std::max(0, position - cfg_.sliding_window + 1) : 0;
                  AttendGroup(kv, &batch.block_indices[batch.block_indptr[s]], first, position, g,
                              &q_[offset], group, scale, scratch.data(), &attn_[offset]);
                }
              });
}

void CpuModel::Mlp(int layer, int m) {
  const model::LayerWeights& w = weights_.layers[layer];
  const int64_t h = cfg_.hidden_size, inter = cfg_.intermediate_size;
  // Each chunk computes gate and up for the same slice of the intermediate features, so SwiGLU
  // applies to the slice without waiting for the other threads.
  ParallelRows(inter, 2 * h, m, [&](int64_t begin, int64_t end) {
    MatMul(xn_.data(), h, m, w.gate_proj.data, w.gate_proj.dtype, h, begin, end, gate_.data(),
           inter, false);
    MatMul(xn_.data(), h, m, w.up_proj.data, w.up_proj.dtype, h, begin, end, up_.data(), inter,
           false);
    for (int t = 0; t < m; ++t) {
      SwiGlu(&gate_[size_t(t) * inter + begin], &up_[size_t(t) * inter + begin], end - begin);
    }
  });
  ParallelMatMul(gate_.data(), m, w.down_proj, x_.data(), /*accumulate=*/true);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Backend>> NewCpuModel(const model::ModelWeights& weights,
                                                     const CpuBackendOptions& options) {
  auto model = std::make_unique<CpuModel>(weights, options);
  if (absl::Status s = model->Init(); !s.ok()) return s;
  return std::unique_ptr<Backend>(std::move(model));
}

}  // namespace kvc::backend::cpu
