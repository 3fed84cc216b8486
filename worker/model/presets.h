// The model shapes the project generates and benchmarks, in one place: kvc-make-model writes
// them, tests and benchmarks build them in memory.
#ifndef KVCLUSTER_WORKER_MODEL_PRESETS_H_
#define KVCLUSTER_WORKER_MODEL_PRESETS_H_

#include "worker/model/model.h"

namespace kvc::model {

// Llama architecture, 2 layers, hidden 64, 4 heads / 2 KV heads (GQA), vocab 512, f32: small
// enough for every test, big enough for GQA and several KV blocks.
ModelConfig TinyLlamaConfig();

// meta-llama/Llama-3.2-1B's dimensions (16 layers, hidden 2048, 32 heads / 8 KV heads,
// head_dim 64, intermediate 8192, vocab 128256, tied embeddings, llama3 rope scaling), bf16.
ModelConfig Llama32_1BShapeConfig();

// meta-llama/Llama-3.1-8B's dimensions (32 layers, hidden 4096, 32 heads / 8 KV heads,
// head_dim 128, intermediate 14336, vocab 128256, untied, llama3 rope scaling), bf16: the
// sim backend's default model (a config.json alone, no weights).
ModelConfig Llama31_8BShapeConfig();

// Qwen/Qwen3-0.6B's dimensions (28 layers, hidden 1024, 16 heads / 8 KV heads, head_dim 128,
// intermediate 3072, vocab 151936, tied, q/k RMSNorm), bf16.
ModelConfig Qwen3_06BShapeConfig();

}  // namespace kvc::model

#endif  // KVCLUSTER_WORKER_MODEL_PRESETS_H_
