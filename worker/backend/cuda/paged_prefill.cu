// Paged prefill attention: a plain tiled kernel on the CUDA cores (no tensor cores).
//
// Block (tile, kv_head x head chunk), 256 threads. A block owns kRows query rows: row
// r = token * heads_per_block + head, for the tile's tokens and up to 8 query heads sharing one
// KV head. It walks the keys from the first one any of its rows may see to the last token's
// position, kKeys at a time: K and V of the tile are gathered from the paged cache into shared
// memory as f32, every thread scores one key against eight rows, one warp per row updates the
// online softmax, and every thread adds the weighted V rows into its share of the outputs
// (one column, kRows * head_dim / 256 rows). Masked pairs (future keys, outside the sliding
// window, rows past the tile's tokens) score -inf.
#include <cmath>

#include "worker/backend/cuda/device_util.cuh"
#include "worker/backend/cuda/paged_attention.h"

namespace kvc::backend::cuda {
namespace {

using model::DType;

constexpr int kPrefillThreads = 256;
constexpr int kWarps = kPrefillThreads / 32;
constexpr int kRows = 64;
constexpr int kRowsPerWarp = kRows / kWarps;
constexpr int kKeys = 32;  // one key per lane when scoring
constexpr int kMaxHeadDim = 128;
constexpr int kMaxAccumulators = kRows * kMaxHeadDim / kPrefillThreads;
constexpr int kMaxHeadsPerBlock = 8;
static_assert(kRows == kWarps * kRowsPerWarp && kRowsPerWarp == 8, "scores assume 8 rows/warp");

__host__ __device__ inline int HeadsPerBlock(int group) {
  return group < kMaxHeadsPerBlock ? group : kMaxHeadsPerBlock;
}

size_t PrefillSharedFloats(int head_dim) {
  return size_t(kRows) * head_dim          // q
         + size_t(kKeys) * (head_dim + 1)  // K, rows padded against bank conflicts
         + size_t(kKeys) * head_dim        // V
         + size_t(kRows) * (kKeys + 1)     // scores, then weights
         + 3 * size_t(kRows);              // running max, sum, rescale factor
}

__global__ void __launch_bounds__(kPrefillThreads, 2)
    PagedPrefillKernel(AttentionParams p, PagedKv kv, const PrefillTile* tiles, int head_chunks) {
  extern __shared__ float smem[];
  const int hd = kv.head_dim;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int group = p.num_heads / kv.num_kv_heads;
  const int heads_per_block = HeadsPerBlock(group);
  const int tokens_per_tile = kRows / heads_per_block;
  const PrefillTile tile = tiles[blockIdx.x];
  const int s = tile.seq;
  const int kv_head = blockIdx.y / head_chunks, chunk = blockIdx.y % head_chunks;
  const int h0 = kv_head * group + chunk * heads_per_block;
  const int gcount = min(heads_per_block, group - chunk * heads_per_block);
  const int q_begin = p.qo_indptr[s];
  const int num_new = p.qo_indptr[s + 1] - q_begin;
  const int ntok = min(tokens_per_tile, num_new - tile.first_token);
  const int pos0 = p.context_lens[s] - num_new + tile.first_token;  // the tile's first token
  const int32_t* table = p.kv_indices + p.kv_indptr[s];
  const int window = p.sliding_window;

  float* qs = smem;                       // [kRows][hd]
  float* ks = qs + kRows * hd;            // [kKeys][hd + 1]
  float* vs = ks + kKeys * (hd + 1);      // [kKeys][hd]
  float* ss = vs + kKeys * hd;            // [kRows][kKeys + 1]
  float* m_s = ss + kRows * (kKeys + 1);  // [kRows]
  float* l_s = m_s + kRows;               // [kRows]
  float* alpha_s = l_s + kRows;           // [kRows]

  // Row r is (token r / heads_per_block, head r % heads_per_block); rows past the tile's tokens
  // or the chunk's heads are padding.
  const auto row_valid = [&](int r) {
    return r / heads_per_block < ntok && r % heads_per_block < gcount;
  };
  for (int idx = tid; idx < kRows * hd; idx += kPrefillThreads) {
    const int r = idx / hd, d = idx % hd;
    const int token = q_begin + tile.first_token + r / heads_per_block;
    qs[idx] = row_valid(r)
                  ? p.q[size_t(token) * p.q_stride + size_t(h0 + r % heads_per_block) * hd + d]
                  : 0.0f;
  }
  if (tid < kRows) {
    m_s[tid] = -INFINITY;
    l_s[tid] = 0.0f;
  }
  // Outputs of this thread: column `col`, rows row0 + j * row_step for j < num_acc.
  const int col = tid % hd;
  const int row0 = tid / hd;
  const int row_step = kPrefillThreads / hd;
  const int num_acc = kRows / row_step;
  float acc[kMaxAccumulators];
#pragma unroll
  for (int j = 0; j < kMaxAccumulators; ++j) acc[j] = 0.0f;
  __syncthreads();

  const int key_begin = window > 0 ? max(0, pos0 - window + 1) : 0;
  const int key_end = pos0 + ntok;  // one past the last token's position
  for (int key_base = key_begin; key_base < key_end; key_base += kKeys) {
    for (int idx = tid; idx < kKeys * hd; idx += kPrefillThreads) {
      const int k = idx / hd, d = idx % hd;
      const int key = key_base + k;
      float k_value = 0.0f, v_value = 0.0f;
      if (key < key_end) {
        const int32_t block = table[key / kv.block_size];
        const size_t offset =
            ((size_t(block) * kv.num_kv_heads + kv_head) * kv.block_size + key % kv.block_size) *
                hd +
            d;
        k_value = device::LoadAs(kv.k, offset, kv.dtype);
        v_value = device::LoadAs(kv.v, offset, kv.dtype);
      }
      ks[k * (hd + 1) + d] = k_value;
      vs[k * hd + d] = v_value;
    }
    __syncthreads();
    {
      // Lane `lane` scores key key_base + lane against rows warp + 8 j.
      float dots[kRowsPerWarp];
#pragma unroll
      for (int j = 0; j < kRowsPerWarp; ++j) dots[j] = 0.0f;
      for (int d = 0; d < hd; ++d) {
        const float k_d = ks[lane * (hd + 1) + d];
#pragma unroll
        for (int j = 0; j < kRowsPerWarp; ++j) dots[j] += qs[(warp + kWarps * j) * hd + d] * k_d;
      }
      const int key = key_base + lane;
#pragma unroll
      for (int j = 0; j < kRowsPerWarp; ++j) {
        const int r = warp + kWarps * j;
        const int q_position = pos0 + r / heads_per_block;
        const bool visible = row_valid(r) && key <= q_position && key < key_end &&
                             (window <= 0 || key > q_position - window);
        ss[r * (kKeys + 1) + lane] = visible ? dots[j] * p.scale : -INFINITY;
      }
    }
    __syncthreads();
    // Warp `warp` updates rows warp * 8 .. warp * 8 + 7; lane = key.
#pragma unroll
    for (int j = 0; j < kRowsPerWarp; ++j) {
      const int r = warp * kRowsPerWarp + j;
      const float score = ss[r * (kKeys + 1) + lane];
      const float m_old = m_s[r];
      const float m_new = fmaxf(m_old, device::WarpMax(score));
      const float e = m_new == -INFINITY ? 0.0f : expf(score - m_new);
      ss[r * (kKeys + 1) + lane] = e;
      const float sum = device::WarpSum(e);
      if (lane == 0) {
        const float alpha = m_new == -INFINITY ? 1.0f : expf(m_old - m_new);
        l_s[r] = l_s[r] * alpha + sum;
        m_s[r] = m_new;
        alpha_s[r] = alpha;
      }
    }
    __syncthreads();
#pragma unroll
    for (int j = 0; j < kMaxAccumulators; ++j) {
      if (j < num_acc) acc[j] *= alpha_s[row0 + j * row_step];
    }
#pragma unroll 1
    for (int k = 0; k < kKeys; ++k) {
      const float v = vs[k * hd + col];
#pragma unroll
      for (int j = 0; j < kMaxAccumulators; ++j) {
        if (j < num_acc) acc[j] += ss[(row0 + j * row_step) * (kKeys + 1) + k] * v;
      }
    }
    __syncthreads();  // the next key tile overwrites K, V and the weights
  }

#pragma unroll
  for (int j = 0; j < kMaxAccumulators; ++j) {
    if (j < num_acc) {
      const int r = row0 + j * row_step;
      if (row_valid(r)) {
        const int token = q_begin + tile.first_token + r / heads_per_block;
        device::StoreAs(p.out,
                        size_t(token) * p.out_stride + size_t(h0 + r % heads_per_block) * hd + col,
                        p.out_dtype, acc[j] / l_s[r]);
      }
    }
  }
}

}  // namespace

int PrefillTokensPerTile(int num_heads, int num_kv_heads) {
  return kRows / HeadsPerBlock(num_heads / num_kv_heads);
}

cudaError_t LaunchPagedPrefill(const AttentionParams& params, const PagedKv& kv,
                               const PrefillTile* tiles, int num_tiles, cudaStream_t stream) {
  if (num_tiles == 0) return cudaSuccess;
  if (num_tiles < 0 || kv.num_kv_heads <= 0 || params.num_heads % kv.num_kv_heads != 0 ||
      kv.block_size <= 0 || !PagedAttentionSupports(kv.head_dim, kv.dtype)) {
    return cudaErrorInvalidValue;
  }
  const int group = params.num_heads / kv.num_kv_heads;
  const int head_chunks = (group + HeadsPerBlock(group) - 1) / HeadsPerBlock(group);
  if (kv.num_kv_heads * head_chunks > 65535) return cudaErrorInvalidValue;
  const size_t smem = PrefillSharedFloats(kv.head_dim) * sizeof(float);
  // Above 48 KB a kernel must opt in. The attribute belongs to the function, shared by every
  // caller, so it is always set to what the largest head size needs (the same value each time).
  const int most = int(PrefillSharedFloats(kMaxHeadDim) * sizeof(float));
  if (cudaError_t e = cudaFuncSetAttribute(PagedPrefillKernel,
                                           cudaFuncAttributeMaxDynamicSharedMemorySize, most);
      e != cudaSuccess) {
    return e;
  }
  const dim3 grid(unsigned(num_tiles), unsigned(kv.num_kv_heads * head_chunks));
  PagedPrefillKernel<<<grid, kPrefillThreads, smem, stream>>>(params, kv, tiles, head_chunks);
  return cudaGetLastError();
}

}  // namespace kvc::backend::cuda
