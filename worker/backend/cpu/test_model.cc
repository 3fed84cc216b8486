#include "worker/backend/cpu/test_model.h"

#include "worker/model/presets.h"
#include "worker/model/random_weights.h"

namespace kvc::backend::cpu {

model::ModelConfig TinyConfig(model::Architecture architecture) {
  model::ModelConfig c = model::TinyLlamaConfig();
  c.architecture = architecture;
  c.vocab_size = 256;
  c.bos_token_id.reset();
  c.eos_token_ids = {1};
  c.attention_bias = architecture == model::Architecture::kQwen2;
  c.qk_norm = architecture == model::Architecture::kQwen3;
  return c;
}

model::ModelConfig Llama32_1BShapeConfig() { return model::Llama32_1BShapeConfig(); }

model::ModelWeights MakeRandomModel(const model::ModelConfig& config, uint64_t seed) {
  // One generator for the whole project: the same one kvc-make-model writes to files.
  return model::MakeRandomWeights(config, model::InitOptions{.seed = seed});
}

}  // namespace kvc::backend::cpu
