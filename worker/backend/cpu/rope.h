// Rotary position embedding as Hugging Face's Llama/Qwen "rotate_half" form defines it: for
// each head, element i pairs with element i + head_dim / 2, rotated by position * inv_freq[i].
#ifndef KVCLUSTER_WORKER_BACKEND_CPU_ROPE_H_
#define KVCLUSTER_WORKER_BACKEND_CPU_ROPE_H_

#include <vector>

#include "worker/model/model.h"

namespace kvc::backend::cpu {

// inv_freq[i] = rope_theta^(-2i / head_dim) for i < head_dim / 2, adjusted by llama3 rope
// scaling when the config has it (HF _compute_llama3_parameters: low frequencies divided by
// `factor`, high ones kept, the band between interpolated smoothly).
std::vector<double> RopeInverseFrequencies(const model::ModelConfig& config);

// cos/sin of position * inv_freq[i], head_dim / 2 values each.
void RopeAngles(const std::vector<double>& inv_freq, int position, float* cos_out, float* sin_out);

// Rotates num_heads heads of x ([num_heads][head_dim]) in place.
void ApplyRope(float* x, int num_heads, int head_dim, const float* cos, const float* sin);

}  // namespace kvc::backend::cpu

#endif  // KVCLUSTER_WORKER_BACKEND_CPU_ROPE_H_
