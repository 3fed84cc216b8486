// Hugging Face config.json (+ generation_config.json) <-> ModelConfig for the architectures in
// model.h. Parsing is strict: a missing or ill-typed required field, an unsupported
// architecture, activation or rope_scaling type is an INVALID_ARGUMENT / UNIMPLEMENTED status
// that names the field, never a silently wrong default. Free functions, no state: thread-safe.
#ifndef KVCLUSTER_WORKER_MODEL_CONFIG_H_
#define KVCLUSTER_WORKER_MODEL_CONFIG_H_

#include <filesystem>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "worker/model/model.h"

namespace kvc::model {

struct ParsedConfig {
  ModelConfig config;
  // False when config.json names no "torch_dtype"/"dtype"; config.dtype is then a guess
  // that the loader replaces with the stored tensors' dtype.
  bool dtype_given = false;
};

// `generation_config_json` may be empty (no generation_config.json); when present, its
// bos_token_id / eos_token_id override config.json's.
absl::StatusOr<ParsedConfig> ParseModelConfig(absl::string_view config_json,
                                              absl::string_view generation_config_json = {});

// Reads `dir`/config.json and, when it exists, `dir`/generation_config.json.
absl::StatusOr<ParsedConfig> LoadModelConfig(const std::filesystem::path& dir);

// Checks the invariants every backend relies on (positive sizes, heads divisible by KV heads,
// no overflow in tensor sizes).
absl::Status ValidateModelConfig(const ModelConfig& config);

// The config.json / generation_config.json that Hugging Face writes for `config` (what
// kvc-make-model emits); ParseModelConfig of the pair gives `config` back.
std::string ModelConfigToJson(const ModelConfig& config);
std::string GenerationConfigToJson(const ModelConfig& config);

// "float32" / "bfloat16" / "float16" (torch_dtype spelling) and back; Parse also accepts
// "f32", "bf16", "f16" and the safetensors names.
const char* TorchDTypeName(DType dtype);
absl::StatusOr<DType> ParseDTypeName(absl::string_view name);

}  // namespace kvc::model

#endif  // KVCLUSTER_WORKER_MODEL_CONFIG_H_
