// Token sampling on the GPU, so that only token ids (and log-probabilities) cross to the host.
// The contract is engine::Sampler's (worker/engine/sampler.h):
// - greedy (temperature 0, or top_k 1): the largest logit, the lowest id on ties; exactly the
//   CPU sampler's choice for the same logits;
// - otherwise weights w_i = exp((logit_i - max) / temperature), cut to the top_k largest
//   logits (ties: lower id first), then to the shortest prefix of that order whose share of the
//   total weight reaches top_p; the token is where u * (kept weight) falls in the cumulative
//   sum, walking the kept tokens in that order (in id order when neither cut applies), with
//   u = the sampler's counter-based uniform of (seed, position). Same draw as the CPU sampler
//   but for rounding: the float weights are summed as 40-bit fixed point (exact, so the result
//   does not depend on thread timing), which moves the boundaries between tokens by ~1e-12.
// - logprob: the log-softmax of the raw logits at the chosen token.
// The order of the kept tokens is found without sorting, by radix selection over 64-bit keys
// (the logit's order-preserving bits, then the complemented id).
#ifndef KVCLUSTER_WORKER_BACKEND_CUDA_SAMPLING_H_
#define KVCLUSTER_WORKER_BACKEND_CUDA_SAMPLING_H_

#include <cuda_runtime_api.h>

#include <cstdint>

namespace kvc::backend::cuda {

// One row's sampling parameters, as the device reads them.
struct SampleParams {
  uint64_t seed = 0;
  uint64_t position = 0;  // output position of the token to draw (0 = first generated)
  float temperature = 0.0f;
  float top_p = 1.0f;
  int32_t top_k = 0;
  int32_t sample = 0;  // 0: no token wanted for this row (tokens[r] = -1)
};

// For each row r < num_rows of `logits` ([num_rows][vocab] f32): tokens[r] and logprobs[r]
// per params[r]. `scratch` holds num_rows * vocab floats (the weights).
cudaError_t LaunchSampleTokens(const float* logits, int num_rows, int vocab,
                               const SampleParams* params, float* scratch, int32_t* tokens,
                               float* logprobs, cudaStream_t stream);

}  // namespace kvc::backend::cuda

#endif  // KVCLUSTER_WORKER_BACKEND_CUDA_SAMPLING_H_
