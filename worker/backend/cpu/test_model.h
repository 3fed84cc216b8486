// Models with deterministic random weights built in memory (ModelWeights::storage owns the
// buffers), for tests and benchmarks that need no model directory.
#ifndef KVCLUSTER_WORKER_BACKEND_CPU_TEST_MODEL_H_
#define KVCLUSTER_WORKER_BACKEND_CPU_TEST_MODEL_H_

#include <cstdint>

#include "worker/model/model.h"

namespace kvc::backend::cpu {

// A tiny config of `architecture` (hidden 64, 2 layers, vocab 256), f32 weights, GQA 4:2.
// Qwen2 gets attention_bias, Qwen3 qk_norm; tests adjust the rest.
model::ModelConfig TinyConfig(model::Architecture architecture);

// Llama-3.2-1B's dimensions (16 layers, hidden 2048, 32 heads / 8 KV heads, head_dim 64,
// intermediate 8192, vocab 128256, tied embeddings, llama3 rope scaling), bf16.
model::ModelConfig Llama32_1BShapeConfig();

// Weights of `config.dtype` from model::MakeRandomWeights (the initialisation kvc-make-model
// writes to files, documented in worker/model/random_weights.h). Same seed, same weights.
model::ModelWeights MakeRandomModel(const model::ModelConfig& config, uint64_t seed);

}  // namespace kvc::backend::cpu

#endif  // KVCLUSTER_WORKER_BACKEND_CPU_TEST_MODEL_H_
