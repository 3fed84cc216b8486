#include "worker/model/config.h"

#include <cmath>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"
#include "worker/model/file_util.h"

namespace kvc::model {
namespace {

using nlohmann::json;

// Each getter returns the field's value, the default when it is absent or null (only where a
// default exists), or a status naming the field.
absl::StatusOr<int64_t> GetInt(const json& object, const char* key, std::optional<int64_t> dflt,
                               int64_t min_value = 0,
                               int64_t max_value = std::numeric_limits<int32_t>::max()) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) {
    if (dflt) return *dflt;
    return absl::InvalidArgumentError(absl::StrCat("config.json: missing \"", key, "\""));
  }
  if (!it->is_number_integer()) {
    return absl::InvalidArgumentError(
        absl::StrCat("config.json: \"", key, "\" must be an integer, got ", it->dump()));
  }
  const int64_t value =
      it->is_number_unsigned()
          ? int64_t(std::min<uint64_t>(it->get<uint64_t>(), uint64_t(max_value) + 1))
          : it->get<int64_t>();
  if (value < min_value || value > max_value) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config.json: \"", key, "\" = ", value, " is outside [", min_value, ", ", max_value, "]"));
  }
  return value;
}

absl::StatusOr<double> GetDouble(const json& object, const char* key, std::optional<double> dflt,
                                 absl::string_view where = "config.json") {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) {
    if (dflt) return *dflt;
    return absl::InvalidArgumentError(absl::StrCat(where, ": missing \"", key, "\""));
  }
  if (!it->is_number()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": \"", key, "\" must be a number, got ", it->dump()));
  }
  const double value = it->get<double>();
  if (!std::isfinite(value)) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": \"", key, "\" is not finite"));
  }
  return value;
}

absl::StatusOr<bool> GetBool(const json& object, const char* key, bool dflt) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return dflt;
  if (!it->is_boolean()) {
    return absl::InvalidArgumentError(
        absl::StrCat("config.json: \"", key, "\" must be true or false, got ", it->dump()));
  }
  return it->get<bool>();
}

absl::StatusOr<json> ParseJsonObject(absl::string_view text, absl::string_view what) {
  json parsed = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(what, ": bad JSON"));
  if (!parsed.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": not a JSON object"));
  }
  return parsed;
}

absl::StatusOr<Architecture> ParseArchitecture(const json& object) {
  struct Known {
    const char* hf_class;
    const char* model_type;
    Architecture architecture;
  };
  static constexpr Known kKnown[] = {
      {"LlamaForCausalLM", "llama", Architecture::kLlama},
      {"MistralForCausalLM", "mistral", Architecture::kMistral},
      {"Qwen2ForCausalLM", "qwen2", Architecture::kQwen2},
      {"Qwen3ForCausalLM", "qwen3", Architecture::kQwen3},
  };
  auto it = object.find("architectures");
  if (it != object.end() && !it->is_null()) {
    if (!it->is_array() || it->size() != 1 || !(*it)[0].is_string()) {
      return absl::InvalidArgumentError(
          "config.json: \"architectures\" must be a list of one class name");
    }
    const std::string name = (*it)[0].get<std::string>();
    for (const Known& known : kKnown) {
      if (name == known.hf_class) return known.architecture;
    }
    return absl::UnimplementedError(
        absl::StrCat("config.json: unsupported architecture \"", name,
                     "\" (supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, "
                     "Qwen3ForCausalLM)"));
  }
  it = object.find("model_type");
  if (it == object.end() || !it->is_string()) {
    return absl::InvalidArgumentError("config.json: neither \"architectures\" nor \"model_type\"");
  }
  const std::string type = it->get<std::string>();
  for (const Known& known : kKnown) {
    if (type == known.model_type) return known.architecture;
  }
  return absl::UnimplementedError(
      absl::StrCat("config.json: unsupported model_type \"", type, "\""));
}

// rope_scaling (or the newer rope_parameters): null / "default" is plain RoPE, "llama3" is
// supported; everything else changes the math, so it is refused rather than ignored.
absl::Status ParseRopeScaling(const json& object, ModelConfig& config) {
  const char* key = "rope_scaling";
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) {
    key = "rope_parameters";
    it = object.find(key);
    if (it == object.end() || it->is_null()) return absl::OkStatus();
  }
  const std::string where = absl::StrCat("config.json \"", key, "\"");
  if (!it->is_object()) return absl::InvalidArgumentError(where + " must be an object");
  const json& rope = *it;
  if (rope.contains("rope_theta")) {
    auto theta = GetDouble(rope, "rope_theta", std::nullopt, where);
    if (!theta.ok()) return theta.status();
    config.rope_theta = *theta;
  }
  std::string type = "default";
  for (const char* type_key : {"rope_type", "type"}) {
    auto type_it = rope.find(type_key);
    if (type_it == rope.end() || type_it->is_null()) continue;
    if (!type_it->is_string()) return absl::InvalidArgumentError(where + ": type not a string");
    type = type_it->get<std::string>();
    break;
  }
  if (type == "default") return absl::OkStatus();
  if (type != "llama3") {
    return absl::UnimplementedError(
        absl::StrCat(where, ": rope type \"", type, "\" is not supported (supported: llama3)"));
  }
  Llama3RopeScaling scaling;
  auto factor = GetDouble(rope, "factor", std::nullopt, where);
  auto low = GetDouble(rope, "low_freq_factor", std::nullopt, where);
  auto high = GetDouble(rope, "high_freq_factor", std::nullopt, where);
  if (!factor.ok()) return factor.status();
  if (!low.ok()) return low.status();
  if (!high.ok()) return high.status();
  auto original = GetInt(rope, "original_max_position_embeddings", std::nullopt, 1);
  if (!original.ok()) return original.status();
  if (*factor <= 0 || *low <= 0 || *high <= *low) {
    return absl::InvalidArgumentError(
        where + ": llama3 needs factor > 0 and high_freq_factor > low_freq_factor > 0");
  }
  scaling.factor = *factor;
  scaling.low_freq_factor = *low;
  scaling.high_freq_factor = *high;
  scaling.original_max_position_embeddings = int(*original);
  config.rope_scaling = scaling;
  return absl::OkStatus();
}

// bos/eos: an int, null, or (eos only) a list of ints. Returns whether the key was set.
absl::StatusOr<bool> ParseTokenIds(const json& object, const char* key, absl::string_view file,
                                   std::vector<int>& ids) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return false;
  std::vector<int> parsed;
  const json list = it->is_array() ? *it : json::array({*it});
  for (const json& id : list) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 ||
        id.get<int64_t>() > std::numeric_limits<int32_t>::max()) {
      return absl::InvalidArgumentError(
          absl::StrCat(file, ": \"", key, "\" must be token ids, got ", it->dump()));
    }
    parsed.push_back(int(id.get<int64_t>()));
  }
  ids = std::move(parsed);
  return true;
}

absl::Status ParseSpecialTokens(const json& object, absl::string_view file, ModelConfig& config) {
  std::vector<int> bos;
  auto has_bos = ParseTokenIds(object, "bos_token_id", file, bos);
  if (!has_bos.ok()) return has_bos.status();
  if (*has_bos) {
    if (bos.size() != 1) {
      return absl::InvalidArgumentError(absl::StrCat(file, ": \"bos_token_id\" must be one id"));
    }
    config.bos_token_id = bos[0];
  }
  auto has_eos = ParseTokenIds(object, "eos_token_id", file, config.eos_token_ids);
  return has_eos.status();
}

absl::StatusOr<ParsedConfig> ParseConfigObject(const json& object) {
  ParsedConfig parsed;
  ModelConfig& config = parsed.config;
  auto architecture = ParseArchitecture(object);
  if (!architecture.ok()) return architecture.status();
  config.architecture = *architecture;

  constexpr int64_t kMaxDim = 1 << 20;
  auto hidden = GetInt(object, "hidden_size", std::nullopt, 1, kMaxDim);
  if (!hidden.ok()) return hidden.status();
  auto layers = GetInt(object, "num_hidden_layers", std::nullopt, 1, 4096);
  if (!layers.ok()) return layers.status();
  auto heads = GetInt(object, "num_attention_heads", std::nullopt, 1, 4096);
  if (!heads.ok()) return heads.status();
  auto kv_heads = GetInt(object, "num_key_value_heads", *heads, 1, 4096);
  if (!kv_heads.ok()) return kv_heads.status();
  auto head_dim = GetInt(object, "head_dim", *hidden / *heads, 1, 65536);
  if (!head_dim.ok()) return head_dim.status();
  const bool explicit_head_dim = object.contains("head_dim") && !object["head_dim"].is_null();
  if (!explicit_head_dim && *hidden % *heads != 0) {
    return absl::InvalidArgumentError(
        "config.json: hidden_size is not divisible by num_attention_heads and no head_dim");
  }
  auto intermediate = GetInt(object, "intermediate_size", std::nullopt, 1, kMaxDim);
  if (!intermediate.ok()) return intermediate.status();
  auto vocab = GetInt(object, "vocab_size", std::nullopt, 1, 1 << 24);
  if (!vocab.ok()) return vocab.status();
  auto max_positions = GetInt(object, "max_position_embeddings", 2048, 1);
  if (!max_positions.ok()) return max_positions.status();
  auto eps = GetDouble(object, "rms_norm_eps", 1e-6);
  if (!eps.ok()) return eps.status();
  auto theta = GetDouble(object, "rope_theta", 10000.0);
  if (!theta.ok()) return theta.status();
  auto tie = GetBool(object, "tie_word_embeddings", false);
  if (!tie.ok()) return tie.status();
  auto attention_bias = GetBool(object, "attention_bias", false);
  if (!attention_bias.ok()) return attention_bias.status();
  auto mlp_bias = GetBool(object, "mlp_bias", false);
  if (!mlp_bias.ok()) return mlp_bias.status();
  if (*mlp_bias) return absl::UnimplementedError("config.json: \"mlp_bias\": true is unsupported");

  config.hidden_size = int(*hidden);
  config.num_layers = int(*layers);
  config.num_heads = int(*heads);
  config.num_kv_heads = int(*kv_heads);
  config.head_dim = int(*head_dim);
  config.intermediate_size = int(*intermediate);
  config.vocab_size = int(*vocab);
  config.max_position_embeddings = int(*max_positions);
  config.rms_norm_eps = *eps;
  config.rope_theta = *theta;
  config.tie_word_embeddings = *tie;
  switch (config.architecture) {
    case Architecture::kQwen2:  // q/k/v always biased, o_proj never
      config.attention_bias = true;
      break;
    case Architecture::kQwen3:
      config.qk_norm = true;
      [[fallthrough]];
    case Architecture::kLlama:  // attention_bias puts a bias on q, k, v and o
      config.attention_bias = *attention_bias;
      config.o_proj_bias = *attention_bias;
      break;
    case Architecture::kMistral:
      break;
  }
  if (auto status = ParseRopeScaling(object, config); !status.ok()) return status;

  if (auto it = object.find("hidden_act"); it != object.end() && !it->is_null()) {
    if (!it->is_string() || it->get<std::string>() != "silu") {
      return absl::UnimplementedError(
          absl::StrCat("config.json: \"hidden_act\" ", it->dump(), " is unsupported (silu)"));
    }
  }
  // Mistral applies sliding_window whenever it is set; Qwen2/3 only with use_sliding_window,
  // and then only from max_window_layers on, which no backend here implements.
  if (config.architecture == Architecture::kMistral) {
    auto window = GetInt(object, "sliding_window", 0, 0);
    if (!window.ok()) return window.status();
    config.sliding_window = int(*window);
  } else {
    auto use_window = GetBool(object, "use_sliding_window", false);
    if (!use_window.ok()) return use_window.status();
    if (*use_window) {
      return absl::UnimplementedError("config.json: \"use_sliding_window\": true is unsupported");
    }
  }

  for (const char* key : {"torch_dtype", "dtype"}) {
    auto it = object.find(key);
    if (it == object.end() || it->is_null()) continue;
    if (!it->is_string()) {
      return absl::InvalidArgumentError(absl::StrCat("config.json: \"", key, "\" not a string"));
    }
    auto dtype = ParseDTypeName(it->get<std::string>());
    if (!dtype.ok()) {
      return absl::UnimplementedError(
          absl::StrCat("config.json: \"", key, "\": ", dtype.status().message()));
    }
    config.dtype = *dtype;
    parsed.dtype_given = true;
    break;
  }
  if (auto status = ParseSpecialTokens(object, "config.json", config); !status.ok()) {
    return status;
  }
  if (auto status = ValidateModelConfig(config); !status.ok()) return status;
  return parsed;
}

}  // namespace

absl::StatusOr<ParsedConfig> ParseModelConfig(absl::string_view config_json,
                                              absl::string_view generation_config_json) {
  // nlohmann only throws for misuse that the checks above rule out; the catch keeps that a
  // status at this boundary (no exceptions leave the module).
  try {
    auto object = ParseJsonObject(config_json, "config.json");
    if (!object.ok()) return object.status();
    auto parsed = ParseConfigObject(*object);
    if (!parsed.ok() || generation_config_json.empty()) return parsed;
    auto generation = ParseJsonObject(generation_config_json, "generation_config.json");
    if (!generation.ok()) return generation.status();
    if (auto status = ParseSpecialTokens(*generation, "generation_config.json", parsed->config);
        !status.ok()) {
      return status;
    }
    return parsed;
  } catch (const std::exception& error) {
    return absl::InvalidArgumentError(absl::StrCat("config.json: ", error.what()));
  }
}

absl::StatusOr<ParsedConfig> LoadModelConfig(const std::filesystem::path& dir) {
  auto config = ReadFileToString(dir / "config.json");
  if (!config.ok()) return config.status();
  std::string generation;
  const std::filesystem::path generation_path = dir / "generation_config.json";
  std::error_code error;
  if (std::filesystem::exists(generation_path, error)) {
    auto text = ReadFileToString(generation_path);
    if (!text.ok()) return text.status();
    generation = std::move(*text);
  }
  auto parsed = ParseModelConfig(*config, generation);
  if (!parsed.ok()) {
    return absl::Status(parsed.status().code(),
                        absl::StrCat(dir.string(), ": ", parsed.status().message()));
  }
  return parsed;
}

absl::Status ValidateModelConfig(const ModelConfig& config) {
  auto fail = [](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("model config: ", why));
  };
  if (config.hidden_size <= 0 || config.num_layers <= 0 || config.num_heads <= 0 ||
      config.num_kv_heads <= 0 || config.head_dim <= 0 || config.intermediate_size <= 0 ||
      config.vocab_size <= 0 || config.max_position_embeddings <= 0) {
    return fail("sizes must be positive");
  }
  if (config.num_heads % config.num_kv_heads != 0) {
    return fail(absl::StrCat("num_attention_heads ", config.num_heads,
                             " is not a multiple of num_key_value_heads ", config.num_kv_heads));
  }
  if (int64_t(config.num_heads) * config.head_dim > (1 << 20)) return fail("heads*head_dim");
  if (!(config.rms_norm_eps > 0) || !(config.rope_theta > 0)) {
    return fail("rms_norm_eps and rope_theta must be positive");
  }
  if (config.bos_token_id && *config.bos_token_id >= config.vocab_size) {
    return fail("bos_token_id outside the vocabulary");
  }
  for (int id : config.eos_token_ids) {
    if (id >= config.vocab_size) return fail("eos_token_id outside the vocabulary");
  }
  return absl::OkStatus();
}

std::string ModelConfigToJson(const ModelConfig& config) {
  static constexpr const char* kModelType[] = {"llama", "mistral", "qwen2", "qwen3"};
  json out = json::object();
  out["architectures"] = json::array({ArchitectureName(config.architecture)});
  out["model_type"] = kModelType[int(config.architecture)];
  out["hidden_size"] = config.hidden_size;
  out["num_hidden_layers"] = config.num_layers;
  out["num_attention_heads"] = config.num_heads;
  out["num_key_value_heads"] = config.num_kv_heads;
  out["head_dim"] = config.head_dim;
  out["intermediate_size"] = config.intermediate_size;
  out["vocab_size"] = config.vocab_size;
  out["max_position_embeddings"] = config.max_position_embeddings;
  out["rms_norm_eps"] = config.rms_norm_eps;
  out["rope_theta"] = config.rope_theta;
  if (config.rope_scaling) {
    out["rope_scaling"] = {{"rope_type", "llama3"},
                           {"factor", config.rope_scaling->factor},
                           {"low_freq_factor", config.rope_scaling->low_freq_factor},
                           {"high_freq_factor", config.rope_scaling->high_freq_factor},
                           {"original_max_position_embeddings",
                            config.rope_scaling->original_max_position_embeddings}};
  } else {
    out["rope_scaling"] = nullptr;
  }
  out["tie_word_embeddings"] = config.tie_word_embeddings;
  if (config.architecture != Architecture::kQwen2) {
    out["attention_bias"] = config.o_proj_bias;
  }
  if (config.architecture == Architecture::kMistral) {
    out["sliding_window"] = config.sliding_window > 0 ? json(config.sliding_window) : json(nullptr);
  } else if (config.architecture != Architecture::kLlama) {
    out["use_sliding_window"] = false;
  }
  out["hidden_act"] = "silu";
  out["torch_dtype"] = TorchDTypeName(config.dtype);
  out["bos_token_id"] = config.bos_token_id ? json(*config.bos_token_id) : json(nullptr);
  if (config.eos_token_ids.size() == 1) {
    out["eos_token_id"] = config.eos_token_ids[0];
  } else if (config.eos_token_ids.empty()) {
    out["eos_token_id"] = nullptr;
  } else {
    out["eos_token_id"] = config.eos_token_ids;
  }
  out["initializer_range"] = 0.02;
  out["use_cache"] = true;
  return out.dump(2) + "\n";
}

std::string GenerationConfigToJson(const ModelConfig& config) {
  json out = json::object();
  if (config.bos_token_id) out["bos_token_id"] = *config.bos_token_id;
  if (config.eos_token_ids.size() == 1) {
    out["eos_token_id"] = config.eos_token_ids[0];
  } else if (!config.eos_token_ids.empty()) {
    out["eos_token_id"] = config.eos_token_ids;
  }
  out["do_sample"] = false;
  return out.dump(2) + "\n";
}

const char* TorchDTypeName(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return "float32";
    case DType::kBF16:
      return "bfloat16";
    case DType::kF16:
      return "float16";
  }
  return "";
}

absl::StatusOr<DType> ParseDTypeName(absl::string_view name) {
  if (name == "float32" || name == "f32" || name == "F32" || name == "float") return DType::kF32;
  if (name == "bfloat16" || name == "bf16" || name == "BF16") return DType::kBF16;
  if (name == "float16" || name == "f16" || name == "F16" || name == "half") return DType::kF16;
  return absl::InvalidArgumentError(
      absl::StrCat("unsupported dtype \"", name, "\" (supported: float32, bfloat16, float16)"));
}

}  // namespace kvc::model
