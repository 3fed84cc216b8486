// The loops of MatMul, written once over a vector instruction set. kernels.cc instantiates
// them for AVX2 and kernels_avx512.cc for AVX-512, each with an `Isa` type of its own in an
// anonymous namespace, so the two instantiations never share a symbol (the files are compiled
// for different CPUs).
//
// An Isa provides: `V` (a vector of kLanes floats), Zero(), LoadX(const float*),
// LoadW<DType>(const void* base, int64_t i) (kLanes weights from element i, as floats),
// LoadOne<DType>(base, i), Fma(a, b, acc) = a * b + acc, and Sum(V) (a fixed reduction order).
//
// Every output element is one accumulator over k in steps of kLanes, then Sum, then the scalar
// tail: the same float operations whatever the tile shape, the number of tokens or the row
// range, so a token's result never depends on its batch (see kernels.h).
#ifndef KVCLUSTER_WORKER_BACKEND_CPU_MATMUL_IMPL_H_
#define KVCLUSTER_WORKER_BACKEND_CPU_MATMUL_IMPL_H_

#include <xmmintrin.h>

#include <cstdint>

#include "worker/model/model.h"

namespace kvc::backend::cpu::matmul_impl {

using model::DType;

// R weight rows x T tokens.
template <class Isa, DType W, int R, int T>
inline void Tile(const float* x, int64_t x_stride, const void* w, int64_t row, int64_t k,
                 float* out, int64_t out_stride, bool accumulate) {
  using V = typename Isa::V;
  constexpr int kLanes = Isa::kLanes;
  V acc[R][T];
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < T; ++t) acc[r][t] = Isa::Zero();
  }
  const int64_t k_vec = k - k % kLanes;
  for (int64_t i = 0; i < k_vec; i += kLanes) {
    V wv[R];
    for (int r = 0; r < R; ++r) wv[r] = Isa::template LoadW<W>(w, (row + r) * k + i);
    for (int t = 0; t < T; ++t) {
      const V xv = Isa::LoadX(x + t * x_stride + i);
      for (int r = 0; r < R; ++r) acc[r][t] = Isa::Fma(wv[r], xv, acc[r][t]);
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < T; ++t) {
      float s = Isa::Sum(acc[r][t]);
      for (int64_t i = k_vec; i < k; ++i) {
        s += x[t * x_stride + i] * Isa::template LoadOne<W>(w, (row + r) * k + i);
      }
      float& o = out[t * out_stride + row + r];
      o = accumulate ? o + s : s;
    }
  }
}

// Decode (one token): R rows at a time, R independent FMA chains and R read streams. While
// it reads rows [row, row + R), it prefetches rows [row + R, row + 2R) into L2 at the same
// offsets, one prefetch per cache line: twice the reads in flight that the hardware
// prefetcher alone keeps, worth 30-40% more GB/s on the 2-core Zen 4 VM where decode is
// bound by memory. Prefetches change no arithmetic.
template <class Isa, DType W, int R>
inline void DecodeTile(const float* x, const void* w, int64_t row, int64_t k, bool prefetch_next,
                       float* out, bool accumulate) {
  using V = typename Isa::V;
  constexpr int kLanes = Isa::kLanes;
  constexpr int64_t kElementBytes = W == DType::kF32 ? 4 : 2;
  constexpr int64_t kLineElements = 64 / kElementBytes;
  V acc[R];
  for (int r = 0; r < R; ++r) acc[r] = Isa::Zero();
  const int64_t k_vec = k - k % kLanes;
  const char* base = static_cast<const char*>(w);
  for (int64_t i = 0; i < k_vec; i += kLanes) {
    const V xv = Isa::LoadX(x + i);
    for (int r = 0; r < R; ++r) {
      acc[r] = Isa::Fma(Isa::template LoadW<W>(w, (row + r) * k + i), xv, acc[r]);
    }
    if (prefetch_next && i % kLineElements == 0) {
      for (int r = 0; r < R; ++r) {
        _mm_prefetch(base + ((row + R + r) * k + i) * kElementBytes, _MM_HINT_T1);
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    float s = Isa::Sum(acc[r]);
    for (int64_t i = k_vec; i < k; ++i) s += x[i] * Isa::template LoadOne<W>(w, (row + r) * k + i);
    float& o = out[row + r];
    o = accumulate ? o + s : s;
  }
}

template <class Isa, DType W>
void MatMulTyped(const float* x, int64_t x_stride, int m, const void* w, int64_t k,
                 int64_t row_begin, int64_t row_end, float* out, int64_t out_stride,
                 bool accumulate) {
  if (m == 1) {
    constexpr int kR = 8;
    int64_t r = row_begin;
    for (; r + kR <= row_end; r += kR) {
      DecodeTile<Isa, W, kR>(x, w, r, k, /*prefetch_next=*/r + 2 * kR <= row_end, out, accumulate);
    }
    for (; r < row_end; ++r) Tile<Isa, W, 1, 1>(x, x_stride, w, r, k, out, out_stride, accumulate);
    return;
  }
  // Tokens in blocks whose activations (about 1 MiB) stay in L2, so each few weight rows,
  // held in L1, meet activations from L2 rather than memory. 1 MiB measured best for k 2048
  // and 8192 on a Zen 4 core (82 and 78 GFLOP/s of ~83 peak, bf16 weights, AVX2).
  int64_t token_block = ((1024 * 1024) / (k * 4)) & ~int64_t(3);
  token_block = token_block < 4 ? 4 : token_block > 256 ? 256 : token_block;
  constexpr int kR = 3;
  constexpr int kT = 4;
  for (int64_t t0 = 0; t0 < m; t0 += token_block) {
    const int64_t t1 = m < t0 + token_block ? m : t0 + token_block;
    const float* xb = x + t0 * x_stride;
    float* ob = out + t0 * out_stride;
    const int64_t tn = t1 - t0;
    int64_t r = row_begin;
    for (; r + kR <= row_end; r += kR) {
      int64_t t = 0;
      for (; t + kT <= tn; t += kT) {
        Tile<Isa, W, kR, kT>(xb + t * x_stride, x_stride, w, r, k, ob + t * out_stride, out_stride,
                             accumulate);
      }
      for (; t < tn; ++t) {
        Tile<Isa, W, kR, 1>(xb + t * x_stride, x_stride, w, r, k, ob + t * out_stride, out_stride,
                            accumulate);
      }
    }
    for (; r < row_end; ++r) {
      int64_t t = 0;
      for (; t + kT <= tn; t += kT) {
        Tile<Isa, W, 1, kT>(xb + t * x_stride, x_stride, w, r, k, ob + t * out_stride, out_stride,
                            accumulate);
      }
      for (; t < tn; ++t) {
        Tile<Isa, W, 1, 1>(xb + t * x_stride, x_stride, w, r, k, ob + t * out_stride, out_stride,
                           accumulate);
      }
    }
  }
}

// The dtype switch.
template <class Isa>
void MatMulAnyDType(const float* x, int64_t x_stride, int m, const void* w, DType w_dtype,
                    int64_t k, int64_t row_begin, int64_t row_end, float* out, int64_t out_stride,
                    bool accumulate) {
  if (m <= 0 || row_begin >= row_end) return;
  switch (w_dtype) {
    case DType::kF32:
      return MatMulTyped<Isa, DType::kF32>(x, x_stride, m, w, k, row_begin, row_end, out,
                                           out_stride, accumulate);
    case DType::kBF16:
      return MatMulTyped<Isa, DType::kBF16>(x, x_stride, m, w, k, row_begin, row_end, out,
                                            out_stride, accumulate);
    case DType::kF16:
      return MatMulTyped<Isa, DType::kF16>(x, x_stride, m, w, k, row_begin, row_end, out,
                                           out_stride, accumulate);
  }
}

}  // namespace kvc::backend::cpu::matmul_impl

#endif  // KVCLUSTER_WORKER_BACKEND_CPU_MATMUL_IMPL_H_
