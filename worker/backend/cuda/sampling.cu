// One block of 256 threads per row. See sampling.h for the contract.
//
// SelectKey finds the element at which a running sum, taken over elements in descending key
// order, first reaches a target: a radix descent over the key's bytes from the most
// significant one. Each pass histograms (per warp, in shared memory, with integer atomics, so
// the totals are exact whatever the order) the metric of the elements that match the bytes
// chosen so far, and thread 0 walks the 256 bins from the top until the target is reached.
// After the last byte the chosen prefix is the element's whole key.
#include <climits>
#include <cmath>

#include "worker/backend/cuda/device_util.cuh"
#include "worker/backend/cuda/sampling.h"

namespace kvc::backend::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
// Weights in [0, 1] are summed as fixed point with 40 fractional bits: exact integer sums
// (independent of the order the threads add them in), ~1e-12 from the float weights, and room
// for 2^23 tokens of weight 1 in 64 bits.
constexpr double kWeightScale = 1099511627776.0;  // 2^40

__device__ unsigned long long Fixed(float weight) {
  return __double2ull_rn(double(weight) * kWeightScale);
}

// engine/sampler.cc's counter-based uniform, bit for bit.
__device__ uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

__device__ double UniformAt(uint64_t seed, uint64_t position) {
  const uint64_t bits = SplitMix64(SplitMix64(seed) ^ position);
  return double(bits >> 11) * (1.0 / 9007199254740992.0);  // 2^-53
}

// Float bits whose unsigned order is the float order.
__device__ uint32_t OrderedBits(float f) {
  const uint32_t bits = __float_as_uint(f);
  return (bits & 0x80000000u) != 0 ? ~bits : (bits | 0x80000000u);
}

// Descending key = descending logit, then ascending id (the CPU sampler's order).
__device__ uint64_t LogitKey(float logit, int i) {
  return (uint64_t(OrderedBits(logit)) << 32) | uint64_t(~uint32_t(i));
}

// Descending key = ascending id.
__device__ uint64_t IdKey(int i) { return uint64_t(~uint32_t(i)); }

struct SelectShared {
  unsigned long long hist[kWarps][256];
  unsigned long long total[256];
  unsigned long long prefix;
  unsigned long long remaining;
};

// The key of the element at which the running metric (1 per element, or its weight), over
// elements with key >= low in descending key order, first reaches `target`.
// REQUIRES: 1 <= target <= the metric of all those elements; called by the whole block.
template <bool kByLogit, bool kWeighted>
__device__ uint64_t SelectKey(const float* logits, const float* weights, int vocab, uint64_t low,
                              uint64_t target, SelectShared& sh) {
  const int warp = threadIdx.x / 32;
  uint64_t prefix = 0, mask = 0;
  for (int shift = kByLogit ? 56 : 24; shift >= 0; shift -= 8) {
    for (int i = threadIdx.x; i < kWarps * 256; i += kThreads) (&sh.hist[0][0])[i] = 0;
    __syncthreads();
    for (int i = threadIdx.x; i < vocab; i += kThreads) {
      const uint64_t key = kByLogit ? LogitKey(logits[i], i) : IdKey(i);
      if ((key & mask) != prefix || key < low) continue;
      const unsigned long long metric = kWeighted ? Fixed(weights[i]) : 1ull;
      if (metric != 0) atomicAdd(&sh.hist[warp][(key >> shift) & 255], metric);
    }
    __syncthreads();
    unsigned long long bin_total = 0;
    for (int w = 0; w < kWarps; ++w) bin_total += sh.hist[w][threadIdx.x];
    sh.total[threadIdx.x] = bin_total;
    __syncthreads();
    if (threadIdx.x == 0) {
      unsigned long long remaining = target;
      int chosen = 0;
      for (int b = 255; b >= 0; --b) {
        if (sh.total[b] >= remaining) {
          chosen = b;
          break;
        }
        remaining -= sh.total[b];
      }
      sh.prefix = prefix | (uint64_t(chosen) << shift);
      sh.remaining = remaining;
    }
    __syncthreads();
    prefix = sh.prefix;
    target = sh.remaining;
    mask |= uint64_t(255) << shift;
    __syncthreads();  // everyone has read prefix/remaining before they are written again
  }
  return prefix;
}

// (value, index) pairs: larger value wins, then lower index.
__device__ bool Better(float v, int i, float best_v, int best_i) {
  return v > best_v || (v == best_v && i < best_i);
}

__global__ void __launch_bounds__(kThreads)
    SampleKernel(const float* all_logits, int vocab, const SampleParams* params, float* all_scratch,
                 int32_t* tokens, float* logprobs) {
  __shared__ SelectShared sh;
  __shared__ float warp_best_v[kWarps];
  __shared__ int warp_best_i[kWarps];
  const int r = blockIdx.x;
  const SampleParams sp = params[r];
  if (sp.sample == 0) {
    if (threadIdx.x == 0) {
      tokens[r] = -1;
      logprobs[r] = 0.0f;
    }
    return;  // the whole block leaves together
  }
  const float* logits = all_logits + size_t(r) * vocab;
  float* weights = all_scratch + size_t(r) * vocab;

  // Arg max, lowest index on ties: the comparison is a total order, so the reduction's order
  // does not matter.
  float best_v = -INFINITY;
  int best_i = INT_MAX;
  for (int i = threadIdx.x; i < vocab; i += kThreads) {
    if (Better(logits[i], i, best_v, best_i)) {
      best_v = logits[i];
      best_i = i;
    }
  }
  for (int offset = 16; offset > 0; offset /= 2) {
    const float other_v = __shfl_xor_sync(0xffffffffu, best_v, offset);
    const int other_i = __shfl_xor_sync(0xffffffffu, best_i, offset);
    if (Better(other_v, other_i, best_v, best_i)) {
      best_v = other_v;
      best_i = other_i;
    }
  }
  if (threadIdx.x % 32 == 0) {
    warp_best_v[threadIdx.x / 32] = best_v;
    warp_best_i[threadIdx.x / 32] = best_i;
  }
  __syncthreads();
  for (int w = 0; w < kWarps; ++w) {
    if (Better(warp_best_v[w], warp_best_i[w], best_v, best_i)) {
      best_v = warp_best_v[w];
      best_i = warp_best_i[w];
    }
  }
  if (best_i == INT_MAX) best_i = 0;  // only when every logit is NaN
  const float max_logit = best_v;

  double exp_sum = 0.0;
  for (int i = threadIdx.x; i < vocab; i += kThreads) {
    exp_sum += exp(double(logits[i]) - double(max_logit));
  }
  exp_sum = device::BlockSum(exp_sum);

  int token = best_i;
  if (!(sp.temperature == 0.0f || sp.top_k == 1)) {
    const double inv_t = 1.0 / double(sp.temperature);
    unsigned long long local = 0;
    for (int i = threadIdx.x; i < vocab; i += kThreads) {
      weights[i] = float(exp((double(logits[i]) - double(max_logit)) * inv_t));
      local += Fixed(weights[i]);
    }
    // BlockSum synchronizes: the weights written above are visible to the whole block after it.
    const unsigned long long total = device::BlockSum(local);
    const double u = UniformAt(sp.seed, sp.position);
    if (sp.top_k == 0 && sp.top_p >= 1.0f) {
      const unsigned long long drawn = min((unsigned long long)(u * double(total)), total - 1);
      token = int(~uint32_t(SelectKey<false, true>(logits, weights, vocab, 0, drawn + 1, sh)));
    } else {
      uint64_t low = 0;
      if (sp.top_k > 0 && sp.top_k < vocab) {
        low = SelectKey<true, false>(logits, weights, vocab, 0, uint64_t(sp.top_k), sh);
      }
      if (sp.top_p < 1.0f) {
        unsigned long long needed = (unsigned long long)ceil(double(sp.top_p) * double(total));
        needed = needed < 1 ? 1 : (needed > total ? total : needed);
        const uint64_t nucleus = SelectKey<true, true>(logits, weights, vocab, 0, needed, sh);
        low = nucleus > low ? nucleus : low;
      }
      unsigned long long kept_local = 0;
      for (int i = threadIdx.x; i < vocab; i += kThreads) {
        if (LogitKey(logits[i], i) >= low) kept_local += Fixed(weights[i]);
      }
      const unsigned long long kept = device::BlockSum(kept_local);
      const unsigned long long drawn = min((unsigned long long)(u * double(kept)), kept - 1);
      const uint64_t key = SelectKey<true, true>(logits, weights, vocab, low, drawn + 1, sh);
      token = int(~uint32_t(key & 0xffffffffu));
    }
  }
  if (threadIdx.x == 0) {
    tokens[r] = token;
    logprobs[r] = float(double(logits[token]) - double(max_logit) - log(exp_sum));
  }
}

}  // namespace

cudaError_t LaunchSampleTokens(const float* logits, int num_rows, int vocab,
                               const SampleParams* params, float* scratch, int32_t* tokens,
                               float* logprobs, cudaStream_t stream) {
  if (num_rows == 0) return cudaSuccess;
  if (num_rows < 0 || vocab <= 0) return cudaErrorInvalidValue;
  SampleKernel<<<num_rows, kThreads, 0, stream>>>(logits, vocab, params, scratch, tokens, logprobs);
  return cudaGetLastError();
}

}  // namespace kvc::backend::cuda
