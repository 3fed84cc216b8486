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

template <DType D>
void AttendGroupTyped(const PagedKvLayer& kv, const int32_t* block_table, int first_position,
                      int position, int kv_head, const float* q, int group_size, float scale,
                      float* scratch, float* out) {
  const int n = position + 1 - first_position;
  const int hd = kv.head_dim;
  const size_t elem = ElementBytes(D);
  const auto* k_base = static_cast<const uint8_t*>(kv.k);
  const auto* v_base = static_cast<const uint8_t*>(kv.v);
  // Scores: each key row is read once for all query heads of the group.
  for (int p = 0; p < n; ++p) {
    const int pos = first_position + p;
    const void* k_row =
        k_base +
        RowOffset(kv, block_table[pos / kv.block_size], kv_head, pos % kv.block_size) * elem;
    for (int g = 0; g < group_size; ++g) {
      scratch[size_t(g) * n + p] = DotRow<D>(q + size_t(g) * hd, k_row, hd) * scale;
    }
  }
  // Softmax per head, then the weighted sum of values.
  for (int g = 0; g < group_size; ++g) {
    float* sg = scratch + size_t(g) * n;
    const float max_score = *std::max_element(sg, sg + n);
    const float inv_sum = 1.0f / ExpShiftedInPlace(sg, n, max_score);
    for (int p = 0; p < n; ++p) sg[p] *= inv_sum;
  }
  std::fill(out, out + size_t(group_size) * hd, 0.0f);
  for (int p = 0; p < n; ++p) {
    const int pos = first_position + p;
    const void* v_row =
        v_base +
        RowOffset(kv, block_table[pos / kv.block_size], kv_head, pos % kv.block_size) * elem;
    for (int g = 0; g < group_size; ++g) {
      AxpyRow<D>(scratch[size_t(g) * n + p], v_row, out + size_t(g) * hd, hd);
    }
  }
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
