// The sim backend's timing model: how long one forward step of a model would take on a GPU,
// from the step's shape (prefill tokens, decode batch size, KV tokens read) and a device
// profile. A roofline: a step reads the weights and the KV it attends over from memory and
// does the FLOPs of its tokens; it takes the longer of the two, plus a fixed overhead.
//
//   memory  = weight bytes + KV bytes read (context tokens) + KV bytes written (new tokens)
//   flops   = 2 x layer matrix params x new tokens + 2 x lm_head params x sequences
//             + 4 x layers x heads x head_dim x attention pairs (query, key) under the mask
//   time    = step_overhead + max(memory / (bandwidth x memory_efficiency),
//                                 flops / (peak_flops x compute_efficiency))
//
// Weight and KV sizes come from the model's config.json, so any model shape can be simulated;
// the device is a SimProfile. The default profile is an H100 SXM5 80GB serving bf16 weights:
//
// - HBM3 bandwidth 3.35 TB/s and dense bf16 tensor throughput 989 TFLOPS: NVIDIA's H100 SXM5
//   datasheet figures (the ones roofline analyses of LLM inference use; their ratio, ~295
//   FLOP/byte, is the ridge point).
// - memory_efficiency 0.80: a batch-1 decode step of vLLM reaches ~75-80% of the HBM roofline
//   (a published vLLM 0.23 sweep of Llama-3.1-8B bf16 on an A100 40GB measured 75 tokens/s at
//   concurrency 1, 77% of that GPU's bandwidth ceiling); the step overhead below takes part of
//   that gap, so the two together give 75% of the ceiling for an 8B model.
// - compute_efficiency 0.50: the model FLOPs utilisation of large prefill GEMMs in serving
//   stacks is typically 40-60% of the datasheet peak; 0.5 is the middle.
// - step_overhead 300 us: scheduling, sampling and launch latency of one step with CUDA graphs.
//
// For the llama-3.1-8b-shape preset (15.0 GB of weights read per step, 128 KiB of bf16 KV per
// token) this gives 5.95 ms for a batch-1 decode step (~168 tokens/s), 60 ms to prefill 2048
// tokens, and 12.3 ms for a decode step of 64 sequences of 2048 tokens each (KV reads then
// outweigh the weights). Describe() prints these figures for the configured model and profile.
//
// Thread-safety: CostModel is immutable after construction and safe to share; the free
// functions are thread-safe.
#ifndef KVCLUSTER_WORKER_BACKEND_SIM_COST_MODEL_H_
#define KVCLUSTER_WORKER_BACKEND_SIM_COST_MODEL_H_

#include <cstdint>
#include <filesystem>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "worker/backend/backend.h"
#include "worker/model/model.h"

namespace kvc::backend::sim {

// A device and serving stack, as the figures that bound a forward step. The JSON profile file
// (--sim-profile) holds any of these fields under the same names; missing ones keep these
// defaults (an H100 SXM5 serving bf16, see the file comment).
struct SimProfile {
  std::string name = "h100-sxm5-bf16";
  double memory_bandwidth_gb_per_s = 3350.0;  // HBM, GB/s (10^9 bytes)
  double memory_efficiency = 0.80;            // share of the bandwidth a step achieves, (0, 1]
  double peak_tflops = 989.0;                 // dense tensor throughput at the weights' dtype
  double compute_efficiency = 0.50;           // share of the peak a step achieves, (0, 1]
  double step_overhead_us = 300.0;            // fixed cost of every step that does work, >= 0
};

// INVALID_ARGUMENT naming the first field out of range.
absl::Status ValidateSimProfile(const SimProfile& profile);

// Parses a profile: a JSON object with any of SimProfile's fields. INVALID_ARGUMENT for bad
// JSON (with the byte offset), a non-object, an unknown field (a typo must not silently keep
// a default), a value of the wrong type, or a value out of range; the message names the field.
absl::StatusOr<SimProfile> ParseSimProfile(absl::string_view json);

// Reads and parses `path`; NOT_FOUND when it does not exist. Messages start with the path.
absl::StatusOr<SimProfile> LoadSimProfile(const std::filesystem::path& path);

// What one step does, in the quantities that cost time.
struct StepShape {
  int64_t prefill_tokens = 0;    // new tokens of sequences with more than one new token
  int64_t decode_sequences = 0;  // sequences with exactly one new token
  int64_t sequences = 0;         // all sequences (each produces logits / a token)
  int64_t kv_tokens_read = 0;    // context tokens whose K/V attention reads, summed
  int64_t attention_pairs = 0;   // (query, key) pairs under the causal mask, summed

  int64_t new_tokens() const { return prefill_tokens + decode_sequences; }
  static StepShape Of(const ForwardBatch& batch);
};

class CostModel {
 public:
  // REQUIRES: ValidateSimProfile(profile).ok(); config's sizes positive.
  CostModel(const model::ModelConfig& config, model::DType kv_dtype, const SimProfile& profile);

  // Modelled device time of one step; zero for a step with no sequences.
  absl::Duration StepTime(const StepShape& shape) const;

  // Bytes of weights one step reads (every layer and the lm_head; embedding rows are few).
  double weight_bytes() const { return weight_bytes_; }
  double kv_bytes_per_token() const { return kv_bytes_per_token_; }
  const SimProfile& profile() const { return profile_; }

  // One line: the profile, the derived sizes and a few example step times.
  std::string Describe() const;

 private:
  SimProfile profile_;
  double weight_bytes_ = 0;
  double kv_bytes_per_token_ = 0;
  double layer_matrix_params_ = 0;  // multiply-adds per token through the layers
  double lm_head_params_ = 0;       // multiply-adds per sequence for its logits
  double attention_flops_per_pair_ = 0;
  double bytes_per_second_ = 0;
  double flops_per_second_ = 0;
};

}  // namespace kvc::backend::sim

#endif  // KVCLUSTER_WORKER_BACKEND_SIM_COST_MODEL_H_
