// Paged decode attention (split-KV, GQA-aware) and the kernel that merges the splits.
//
// Block (kv_head x head chunk, item, split), 128 threads. A K or V row of head_dim elements is
// read by `lanes_per_key` consecutive lanes, 16 bytes each; the block's lanes form
// `lane_groups` such groups, so a tile of keys is lane_groups * kKeysPerThread rows, each lane
// loading kKeysPerThread rows before it uses the first (loads in flight hide memory latency).
// Every K/V row is read once for the (up to G) query heads of the chunk.
//
// Per tile: (1) scores of the chunk's heads against the tile's keys into shared memory,
// (2) one warp per head updates that head's running max and sum (online softmax) and turns the
// scores into weights, (3) each thread rescales its partial sums and adds its keys' weighted
// V rows. At the end the lane groups' partial sums are added in a fixed order and the split
// writes its unnormalised output with its max and sum; the merge kernel rescales the splits.
#include <cmath>
#include <type_traits>

#include "worker/backend/cuda/device_util.cuh"
#include "worker/backend/cuda/paged_attention.h"

namespace kvc::backend::cuda {
namespace {

using device::Bf16Vec;
using device::F16Vec;
using device::F32Vec;
using model::DType;

constexpr int kDecodeThreads = 128;
constexpr int kKeysPerThread = 8;

struct DecodeGeometry {
  int lanes_per_key;  // lanes that share one K/V row
  int lane_groups;    // rows read at once by the block
  int tile;           // keys per tile
};

__host__ __device__ inline DecodeGeometry Geometry(int head_dim, int vec) {
  DecodeGeometry g;
  g.lanes_per_key = head_dim / vec;
  g.lane_groups = kDecodeThreads / g.lanes_per_key;
  g.tile = g.lane_groups * kKeysPerThread;
  return g;
}

// Shared memory: m, l, alpha [G] each, then scores [G][tile], reused at the end for the lane
// groups' partial sums [lane_groups][G][head_dim].
__host__ __device__ inline size_t DecodeSharedFloats(int head_dim, int vec, int group_tile) {
  const DecodeGeometry g = Geometry(head_dim, vec);
  const size_t scores = size_t(group_tile) * g.tile;
  const size_t partial = size_t(g.lane_groups) * group_tile * head_dim;
  return 3 * size_t(group_tile) + (scores > partial ? scores : partial);
}

template <typename Vec, int G>
__global__ void __launch_bounds__(kDecodeThreads)
    PagedDecodeKernel(AttentionParams p, PagedKv kv, const int32_t* seq_ids, int head_chunks,
                      float* partial_out, float* partial_ml) {
  constexpr int kVec = Vec::kVec;
  using Storage = std::conditional_t<kVec == 4, float, uint16_t>;
  extern __shared__ float smem[];
  const int hd = kv.head_dim;
  const DecodeGeometry geo = Geometry(hd, kVec);
  const int lg = threadIdx.x / geo.lanes_per_key;
  const int sub = threadIdx.x % geo.lanes_per_key;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;

  const int kv_head = blockIdx.x / head_chunks, chunk = blockIdx.x % head_chunks;
  const int item = blockIdx.y, split = blockIdx.z, splits = gridDim.z;
  const int s = seq_ids != nullptr ? seq_ids[item] : item;
  const int group = p.num_heads / kv.num_kv_heads;
  const int h0 = kv_head * group + chunk * G;
  const int gcount = min(G, group - chunk * G);
  const int position = p.context_lens[s] - 1;
  const int first = p.sliding_window > 0 ? max(0, position - p.sliding_window + 1) : 0;
  const int n = position + 1 - first;
  const int per_split = ((n + splits - 1) / splits + geo.tile - 1) / geo.tile * geo.tile;
  const int begin = first + min(n, split * per_split);
  const int end = min(position + 1, begin + per_split);
  const int32_t* table = p.kv_indices + p.kv_indptr[s];
  const int q_row = p.qo_indptr[s + 1] - 1;

  float* m_s = smem;
  float* l_s = m_s + G;
  float* alpha_s = l_s + G;
  float* scores = alpha_s + G;  // [G][tile]

  float q[G][kVec];
  float acc[G][kVec];
#pragma unroll
  for (int g = 0; g < G; ++g) {
#pragma unroll
    for (int v = 0; v < kVec; ++v) {
      q[g][v] = g < gcount ? p.q[size_t(q_row) * p.q_stride + size_t(h0 + g) * hd + sub * kVec + v]
                           : 0.0f;
      acc[g][v] = 0.0f;
    }
  }
  if (threadIdx.x < G) {
    m_s[threadIdx.x] = -INFINITY;
    l_s[threadIdx.x] = 0.0f;
  }
  __syncthreads();

  const Storage* k_base = static_cast<const Storage*>(kv.k);
  const Storage* v_base = static_cast<const Storage*>(kv.v);
  // Element offset of this lane's 16 bytes of the row of `key`.
  const auto row_offset = [&](int key) {
    const int32_t block = table[key / kv.block_size];
    const int slot = key % kv.block_size;
    return ((size_t(block) * kv.num_kv_heads + kv_head) * kv.block_size + slot) * hd + sub * kVec;
  };

  for (int tile_start = begin; tile_start < end; tile_start += geo.tile) {
    uint4 raw[kKeysPerThread];
#pragma unroll
    for (int i = 0; i < kKeysPerThread; ++i) {
      const int key = tile_start + i * geo.lane_groups + lg;
      raw[i] = key < end ? *reinterpret_cast<const uint4*>(k_base + row_offset(key))
                         : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int i = 0; i < kKeysPerThread; ++i) {
      const int key = tile_start + i * geo.lane_groups + lg;
      float kf[kVec];
      Vec::Unpack(raw[i], kf);
#pragma unroll
      for (int g = 0; g < G; ++g) {
        float dot = 0.0f;
#pragma unroll
        for (int v = 0; v < kVec; ++v) dot += q[g][v] * kf[v];
        // The lanes of one key are consecutive and aligned, so xor offsets below
        // lanes_per_key stay inside the group.
        for (int offset = geo.lanes_per_key / 2; offset > 0; offset /= 2) {
          dot += __shfl_xor_sync(0xffffffffu, dot, offset);
        }
        if (sub == 0 && g < gcount) {
          scores[g * geo.tile + i * geo.lane_groups + lg] = key < end ? dot * p.scale : -INFINITY;
        }
      }
    }
    __syncthreads();
    for (int g = warp; g < gcount; g += kDecodeThreads / 32) {
      float* sg = scores + g * geo.tile;
      float tile_max = -INFINITY;
      for (int j = lane; j < geo.tile; j += 32) tile_max = fmaxf(tile_max, sg[j]);
      tile_max = device::WarpMax(tile_max);
      const float m_old = m_s[g];
      const float m_new = fmaxf(m_old, tile_max);
      float sum = 0.0f;
      for (int j = lane; j < geo.tile; j += 32) {
        const float e = m_new == -INFINITY ? 0.0f : expf(sg[j] - m_new);
        sg[j] = e;
        sum += e;
      }
      sum = device::WarpSum(sum);
      if (lane == 0) {
        const float alpha = m_new == -INFINITY ? 1.0f : expf(m_old - m_new);
        l_s[g] = l_s[g] * alpha + sum;
        m_s[g] = m_new;
        alpha_s[g] = alpha;
      }
    }
    __syncthreads();
#pragma unroll
    for (int i = 0; i < kKeysPerThread; ++i) {
      const int key = tile_start + i * geo.lane_groups + lg;
      raw[i] = key < end ? *reinterpret_cast<const uint4*>(v_base + row_offset(key))
                         : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int g = 0; g < G; ++g) {
      if (g < gcount) {
        const float alpha = alpha_s[g];
#pragma unroll
        for (int v = 0; v < kVec; ++v) acc[g][v] *= alpha;
      }
    }
#pragma unroll
    for (int i = 0; i < kKeysPerThread; ++i) {
      float vf[kVec];
      Vec::Unpack(raw[i], vf);
#pragma unroll
      for (int g = 0; g < G; ++g) {
        if (g < gcount) {
          const float weight = scores[g * geo.tile + i * geo.lane_groups + lg];
#pragma unroll
          for (int v = 0; v < kVec; ++v) acc[g][v] += weight * vf[v];
        }
      }
    }
    __syncthreads();  // the next tile overwrites the scores
  }

  // Partial sums of the lane groups, added in lane-group order.
  float* partial = scores;  // [lane_groups][G][hd], over the scores (no longer read)
  __syncthreads();
#pragma unroll
  for (int g = 0; g < G; ++g) {
    if (g < gcount) {
#pragma unroll
      for (int v = 0; v < kVec; ++v)
        partial[(size_t(lg) * G + g) * hd + sub * kVec + v] = acc[g][v];
    }
  }
  __syncthreads();
  const size_t out_base =
      (size_t(item) * p.num_heads + h0) * splits + split;  // head h0, this split
  for (int idx = threadIdx.x; idx < gcount * hd; idx += kDecodeThreads) {
    const int g = idx / hd, d = idx % hd;
    float sum = 0.0f;
    for (int l = 0; l < geo.lane_groups; ++l) sum += partial[(size_t(l) * G + g) * hd + d];
    partial_out[(out_base + size_t(g) * splits) * hd + d] = sum;
  }
  if (threadIdx.x < gcount) {
    const size_t o = out_base + size_t(threadIdx.x) * splits;
    partial_ml[2 * o] = m_s[threadIdx.x];
    partial_ml[2 * o + 1] = l_s[threadIdx.x];
  }
}

// Block (item, head): out = sum_s exp(m_s - M) acc_s / sum_s exp(m_s - M) l_s.
__global__ void DecodeMergeKernel(const float* partial_out, const float* partial_ml, int splits,
                                  int head_dim, int num_heads, const int32_t* qo_indptr,
                                  const int32_t* seq_ids, void* out, DType out_dtype,
                                  int out_stride) {
  const int item = blockIdx.x, h = blockIdx.y;
  const int s = seq_ids != nullptr ? seq_ids[item] : item;
  const int q_row = qo_indptr[s + 1] - 1;
  const size_t base = (size_t(item) * num_heads + h) * splits;
  float m_max = -INFINITY;
  for (int sp = 0; sp < splits; ++sp) m_max = fmaxf(m_max, partial_ml[2 * (base + sp)]);
  float total = 0.0f;
  for (int sp = 0; sp < splits; ++sp) {
    const float m = partial_ml[2 * (base + sp)];
    if (m != -INFINITY) total += expf(m - m_max) * partial_ml[2 * (base + sp) + 1];
  }
  for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
    float sum = 0.0f;
    for (int sp = 0; sp < splits; ++sp) {
      const float m = partial_ml[2 * (base + sp)];
      if (m != -INFINITY) sum += expf(m - m_max) * partial_out[(base + sp) * head_dim + d];
    }
    device::StoreAs(out, size_t(q_row) * out_stride + size_t(h) * head_dim + d, out_dtype,
                    sum / total);
  }
}

template <typename Vec, int G>
cudaError_t LaunchDecodeTyped(const AttentionParams& p, const PagedKv& kv, const int32_t* seq_ids,
                              int num_items, int splits, float* workspace, cudaStream_t stream) {
  const int group = p.num_heads / kv.num_kv_heads;
  const int head_chunks = (group + G - 1) / G;
  const dim3 grid(unsigned(kv.num_kv_heads * head_chunks), unsigned(num_items), unsigned(splits));
  const size_t smem = DecodeSharedFloats(kv.head_dim, Vec::kVec, G) * sizeof(float);
  float* partial_out = workspace;
  float* partial_ml = workspace + size_t(num_items) * p.num_heads * splits * kv.head_dim;
  PagedDecodeKernel<Vec, G><<<grid, kDecodeThreads, smem, stream>>>(p, kv, seq_ids, head_chunks,
                                                                    partial_out, partial_ml);
  if (cudaError_t e = cudaGetLastError(); e != cudaSuccess) return e;
  DecodeMergeKernel<<<dim3(unsigned(num_items), unsigned(p.num_heads)), 64, 0, stream>>>(
      partial_out, partial_ml, splits, kv.head_dim, p.num_heads, p.qo_indptr, seq_ids, p.out,
      p.out_dtype, p.out_stride);
  return cudaGetLastError();
}

// G: query heads per block, the smallest power of two >= min(group, 8).
template <typename Vec>
cudaError_t LaunchDecodeForGroup(const AttentionParams& p, const PagedKv& kv,
                                 const int32_t* seq_ids, int num_items, int splits,
                                 float* workspace, cudaStream_t stream) {
  const int group = p.num_heads / kv.num_kv_heads;
  if (group == 1) {
    return LaunchDecodeTyped<Vec, 1>(p, kv, seq_ids, num_items, splits, workspace, stream);
  }
  if (group == 2) {
    return LaunchDecodeTyped<Vec, 2>(p, kv, seq_ids, num_items, splits, workspace, stream);
  }
  if (group <= 4) {
    return LaunchDecodeTyped<Vec, 4>(p, kv, seq_ids, num_items, splits, workspace, stream);
  }
  return LaunchDecodeTyped<Vec, 8>(p, kv, seq_ids, num_items, splits, workspace, stream);
}

}  // namespace

bool PagedAttentionSupports(int head_dim, DType kv_dtype) {
  (void)kv_dtype;  // every cache dtype: a row of 128 f32 is 32 lanes x 16 bytes
  return head_dim >= 16 && head_dim <= 128 && (head_dim & (head_dim - 1)) == 0;
}

int DecodeSplits(int num_items, int num_kv_heads, int num_sms) {
  const int blocks = num_items * num_kv_heads;
  if (blocks <= 0) return 1;
  const int splits = (2 * num_sms + blocks - 1) / blocks;
  return splits < 1 ? 1 : (splits > kMaxDecodeSplits ? kMaxDecodeSplits : splits);
}

size_t DecodeWorkspaceFloats(int num_items, int num_heads, int head_dim, int splits) {
  return size_t(num_items) * num_heads * splits * (head_dim + 2);
}

cudaError_t LaunchPagedDecode(const AttentionParams& params, const PagedKv& kv,
                              const int32_t* seq_ids, int num_items, int splits, float* workspace,
                              cudaStream_t stream) {
  if (num_items == 0) return cudaSuccess;
  if (num_items < 0 || num_items > 65535 || splits < 1 || splits > kMaxDecodeSplits ||
      kv.num_kv_heads <= 0 || params.num_heads % kv.num_kv_heads != 0 || kv.block_size <= 0 ||
      !PagedAttentionSupports(kv.head_dim, kv.dtype)) {
    return cudaErrorInvalidValue;
  }
  switch (kv.dtype) {
    case DType::kF32:
      return LaunchDecodeForGroup<F32Vec>(params, kv, seq_ids, num_items, splits, workspace,
                                          stream);
    case DType::kBF16:
      return LaunchDecodeForGroup<Bf16Vec>(params, kv, seq_ids, num_items, splits, workspace,
                                           stream);
    case DType::kF16:
      return LaunchDecodeForGroup<F16Vec>(params, kv, seq_ids, num_items, splits, workspace,
                                          stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace kvc::backend::cuda
