#include "worker/backend/cpu/attention.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstddef>

#include "worker/backend/cpu/kernels.h"
#include "worker/backend/cpu/simd.h"

namespace kvc::backend::cpu {
namespace {

using model::DType;

inline size_t RowOffset(const PagedKvLayer& kv, int32_t block, int kv_head, int slot) {
  return ((size_t(block) * kv.num_kv_heads + kv_head) * kv.block_size + slot) * kv.head_dim;
}

template <DType D>
inline float DotRow(const float* q, const void* row, int n) {
  __m256 acc = _mm256_setzero_ps();
  const int n8 = n & ~7;
  for (int i = 0; i < n8; i += 8) {
    acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), simd::Load8<D>(row, i), acc);
  }
  float s = simd::HorizontalSum(acc);
  for (int i = n8; i < n; ++i) s += q[i] * simd::LoadOne<D>(row, i);
  return s;
}

template <DType D>
inline void AxpyRow(float a, const void* row, float* y, int n) {
  const __m256 av = _mm256_set1_ps(a);
  const int n8 = n & ~7;
  for (int i = 0; i < n8; i += 8) {
    _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, simd::Load8<D>(row, i), _mm256_loadu_ps(y + i)));
  }
  for (int i = n8; i < n; ++i) y[i] += a * simd::LoadOne<D>(row, i);
}

// x[i] = exp(x[i] - shift); returns the sum. The tail goes through the same vector code.
inline float ExpShiftedInPlace(float* x, int n, float shift) {
  const __m256 shift_v = _mm256_set1_ps(shift);
  __m256 sum = _mm256_setzero_ps();
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 e = simd::Exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), shift_v));
    _mm256_storeu_ps(x + i, e);
    sum = _mm256_add_ps(sum, e);
  }
  if (i < n) {
    alignas(32) float tail[8];
    for (int j = 0; j < 8; ++j) tail[j] = i + j < n ? x[i + j] : -INFINITY;
    const __m256 e = simd::Exp8(_mm256_sub_ps(_mm256_load_ps(tail), shift_v));
    _mm256_store_ps(tail, e);
    sum = _mm256_add_ps(sum, e);
    for (int j = 0; i + j < n; ++j) x[i + j] = tail[j];
  }
  return simd::HorizontalSum(sum);
}

// Eight dot products reduced into one vector, lane j = sum of the lanes of acc[j].
inline __m256 Reduce8(const __m256* acc) {
  const __m256 t0 = _mm256_hadd_ps(acc[0], acc[1]);
  const __m256 t1 = _mm256_hadd_ps(acc[2], acc[3]);
  const __m256 t2 = _mm256_hadd_ps(acc[4], acc[5]);
  const __m256 t3 = _mm256_hadd_ps(acc[6], acc[7]);
  const __m256 u0 = _mm256_hadd_ps(t0, t1);
  const __m256 u1 = _mm256_hadd_ps(t2, t3);
  return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

// Calls fn(p, row, count) for the key positions p .. p + count - 1 (relative to
// first_position) that lie contiguously in one block, starting at `row` (element offset of the
// first one's K or V row for kv_head).
template <typename F>
inline void ForEachBlockRun(const PagedKvLayer& kv, const int32_t* block_table, int first_position,
                            int n, int kv_head, F&& fn) {
  for (int p = 0; p < n;) {
    const int pos = first_position + p;
    const int slot = pos % kv.block_size;
    const int count = std::min(kv.block_size - slot, n - p);
    fn(p, RowOffset(kv, block_table[pos / kv.block_size], kv_head, slot), count);
    p += count;
  }
}

template <DType D>
void AttendGroupTyped(const PagedKvLayer& kv, const int32_t* block_table, int first_position,
                      int position, int kv_head, const float* q, int group_size, float scale,
                      float* scratch, float* out) {
  const int n = position + 1 - first_position;
  const int hd = kv.head_dim;
  const size_t elem = ElementBytes(D);
  const auto* k_base = static_cast<const uint8_t*>(kv.k);
  const auto* v_base = static_cast<const uint8_t*>(kv.v);
  const bool vector_dims = hd % 8 == 0;
  // Scores. Keys at slots 8j .. 8j + 7 of a block are scored eight at a time (eight
  // accumulators, one reduction); the others one by one. Which way a (query, key) pair goes
  // depends only on positions and the block size, never on the rest of the batch.
  ForEachBlockRun(kv, block_table, first_position, n, kv_head, [&](int p0, size_t row, int count) {
    const int first_slot = (first_position + p0) % kv.block_size;
    for (int i = 0; i < count;) {
      const void* k_row = k_base + (row + size_t(i) * hd) * elem;
      if (vector_dims && (first_slot + i) % 8 == 0 && i + 8 <= count) {
        for (int g = 0; g < group_size; ++g) {
          __m256 acc[8];
          for (int j = 0; j < 8; ++j) acc[j] = _mm256_setzero_ps();
          const float* qg = q + size_t(g) * hd;
          for (int d = 0; d < hd; d += 8) {
            const __m256 qv = _mm256_loadu_ps(qg + d);
            for (int j = 0; j < 8; ++j) {
              acc[j] = _mm256_fmadd_ps(qv, simd::Load8<D>(k_row, j * hd + d), acc[j]);
            }
          }
          _mm256_storeu_ps(scratch + size_t(g) * n + p0 + i,
                           _mm256_mul_ps(Reduce8(acc), _mm256_set1_ps(scale)));
        }
        i += 8;
      } else {
        for (int g = 0; g < group_size; ++g) {
          scratch[size_t(g) * n + p0 + i] = DotRow<D>(q + size_t(g) * hd, k_row, hd) * scale;
        }
        ++i;
      }
    }
  });
  // Softmax per head.
  for (int g = 0; g < group_size; ++g) {
    float* sg = scratch + size_t(g) * n;
    const float max_score = *std::max_element(sg, sg + n);
    const float inv_sum = 1.0f / ExpShiftedInPlace(sg, n, max_score);
    for (int p = 0; p < n; ++p) sg[p] *= inv_sum;
  }
  // Weighted sum of values, 32 dimensions at a time held in registers across all keys; the
  // order of the additions is the same as the one-row-at-a-time fallback's.
  if (hd % 32 == 0) {
    for (int g = 0; g < group_size; ++g) {
      const float* sg = scratch + size_t(g) * n;
      for (int d0 = 0; d0 < hd; d0 += 32) {
        __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                         _mm256_setzero_ps()};
        ForEachBlockRun(
            kv, block_table, first_position, n, kv_head, [&](int p0, size_t row, int count) {
              for (int i = 0; i < count; ++i) {
                const void* v_row = v_base + (row + size_t(i) * hd) * elem;
                const __m256 w = _mm256_set1_ps(sg[p0 + i]);
                for (int u = 0; u < 4; ++u) {
                  acc[u] = _mm256_fmadd_ps(w, simd::Load8<D>(v_row, d0 + 8 * u), acc[u]);
                }
              }
            });
        for (int u = 0; u < 4; ++u) _mm256_storeu_ps(out + size_t(g) * hd + d0 + 8 * u, acc[u]);
      }
    }
    return;
  }
  std::fill(out, out + size_t(group_size) * hd, 0.0f);
  ForEachBlockRun(kv, block_table, first_position, n, kv_head, [&](int p0, size_t row, int count) {
    for (int i = 0; i < count; ++i) {
      const void* v_row = v_base + (row + size_t(i) * hd) * elem;
      for (int g = 0; g < group_size; ++g) {
        AxpyRow<D>(scratch[size_t(g) * n + p0 + i], v_row, out + size_t(g) * hd, hd);
      }
    }
  });
}

}  // namespace

void WriteKv(const PagedKvLayer& kv, const int32_t* block_table, int position, const float* k,
             const float* v) {
  const int32_t block = block_table[position / kv.block_size];
  const int slot = position % kv.block_size;
  const size_t elem = ElementBytes(kv.dtype);
  for (int h = 0; h < kv.num_kv_heads; ++h) {
    const size_t offset = RowOffset(kv, block, h, slot) * elem;
    FromF32(k + size_t(h) * kv.head_dim, kv.head_dim, kv.dtype,
            static_cast<uint8_t*>(kv.k) + offset);
    FromF32(v + size_t(h) * kv.head_dim, kv.head_dim, kv.dtype,
            static_cast<uint8_t*>(kv.v) + offset);
  }
}

void AttendGroup(const PagedKvLayer& kv, const int32_t* block_table, int first_position,
                 int position, int kv_head, const float* q, int group_size, float scale,
                 float* scratch, float* out) {
  switch (kv.dtype) {
    case DType::kF32:
      return AttendGroupTyped<DType::kF32>(kv, block_table, first_position, position, kv_head, q,
                                           group_size, scale, scratch, out);
    case DType::kBF16:
      return AttendGroupTyped<DType::kBF16>(kv, block_table, first_position, position, kv_head, q,
                                            group_size, scale, scratch, out);
    case DType::kF16:
      return AttendGroupTyped<DType::kF16>(kv, block_table, first_position, position, kv_head, q,
                                           group_size, scale, scratch, out);
  }
}

}  // namespace kvc::backend::cpu
