#include "tools/kvc-make-model/make_model.h"

#include <unistd.h>

#include <cctype>
#include <memory>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"
#include "tools/kvc-make-model/tiny_tokenizer.h"
#include "worker/model/config.h"
#include "worker/model/file_util.h"
#include "worker/model/presets.h"
#include "worker/model/safetensors_writer.h"
#include "worker/model/tensor_specs.h"

namespace kvc::make_model {
namespace {

using model::ModelConfig;

std::vector<Preset> MakePresets() {
  return {
      {"tiny", "2 layers, hidden 64, 4 heads / 2 KV heads, vocab 512, f32",
       model::TinyLlamaConfig(), ""},
      {"llama-3.2-1b-shape", "Llama-3.2-1B dimensions, bf16, ~2.5 GB",
       model::Llama32_1BShapeConfig(), ".cache/tokenizers/llama3/tokenizer.json"},
      {"qwen3-0.6b-shape", "Qwen3-0.6B dimensions, bf16, ~1.2 GB", model::Qwen3_06BShapeConfig(),
       ".cache/tokenizers/qwen3/tokenizer.json"},
      {"llama-3.1-8b-shape",
       "Llama-3.1-8B dimensions, bf16, ~16 GB; with --config-only the sim backend's model",
       model::Llama31_8BShapeConfig(), ".cache/tokenizers/llama3/tokenizer.json"},
  };
}

// Writes through `write` into PATH.partial and renames it into place, so an interrupted run
// never leaves a truncated file under the real name.
absl::Status WriteAtomically(
    const std::filesystem::path& path,
    const std::function<absl::Status(const std::filesystem::path&)>& write) {
  std::filesystem::path partial = path;
  partial += ".partial";
  if (auto status = write(partial); !status.ok()) {
    std::error_code ignored;
    std::filesystem::remove(partial, ignored);
    return status;
  }
  std::error_code error;
  std::filesystem::rename(partial, path, error);
  if (error) return absl::InternalError(absl::StrCat(path.string(), ": ", error.message()));
  return absl::OkStatus();
}

absl::Status WriteText(const std::filesystem::path& path, const std::string& text) {
  return WriteAtomically(path, [&text](const std::filesystem::path& target) {
    std::FILE* file = std::fopen(target.c_str(), "wb");
    if (file == nullptr) {
      return absl::InternalError(absl::StrCat(target.string(), ": cannot create"));
    }
    const bool ok = std::fwrite(text.data(), 1, text.size(), file) == text.size();
    if (std::fclose(file) != 0 || !ok) {
      return absl::InternalError(absl::StrCat(target.string(), ": write failed"));
    }
    return absl::OkStatus();
  });
}

absl::Status CopyFile(const std::filesystem::path& from, const std::filesystem::path& to) {
  auto text = model::ReadFileToString(from);
  if (!text.ok()) return text.status();
  return WriteText(to, *text);
}

// Old weight files would mix with the new ones (a stale index wins over model.safetensors).
absl::Status RemoveOldWeights(const std::filesystem::path& dir) {
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(dir, error)) {
    const std::string name = entry.path().filename().string();
    const bool weights = name.rfind("model", 0) == 0 &&
                         (name.ends_with(".safetensors") || name.ends_with(".partial") ||
                          name == "model.safetensors.index.json");
    if (weights && !std::filesystem::remove(entry.path(), error)) {
      return absl::InternalError(absl::StrCat(entry.path().string(), ": cannot remove"));
    }
  }
  if (error) return absl::InternalError(absl::StrCat(dir.string(), ": ", error.message()));
  return absl::OkStatus();
}

absl::Status WriteConfigs(const std::filesystem::path& dir, const ModelConfig& config) {
  if (auto status = WriteText(dir / "config.json", model::ModelConfigToJson(config));
      !status.ok()) {
    return status;
  }
  return WriteText(dir / "generation_config.json", model::GenerationConfigToJson(config));
}

absl::Status CopyTokenizer(const std::filesystem::path& tokenizer,
                           const std::filesystem::path& dir) {
  if (auto status = CopyFile(tokenizer, dir / "tokenizer.json"); !status.ok()) return status;
  std::error_code error;
  const std::filesystem::path tokenizer_config = tokenizer.parent_path() / "tokenizer_config.json";
  if (std::filesystem::exists(tokenizer_config, error)) {
    return CopyFile(tokenizer_config, dir / "tokenizer_config.json");
  }
  return absl::OkStatus();
}

// config.json and generation_config.json, plus the tokenizer only when one is given. Weights
// and tokenizer files of an earlier run are removed: they would not match the new config.
absl::Status WriteConfigOnly(const std::filesystem::path& dir, const MakeModelOptions& options) {
  if (!options.tokenizer.empty()) {
    auto max_id = MaxTokenId(options.tokenizer);
    if (!max_id.ok()) return max_id.status();
    if (*max_id >= options.config.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat(options.tokenizer.string(), " has token id ",
                                                     *max_id, ", outside vocab_size ",
                                                     options.config.vocab_size));
    }
  }
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  if (error) return absl::InternalError(absl::StrCat(dir.string(), ": ", error.message()));
  if (auto status = RemoveOldWeights(dir); !status.ok()) return status;
  if (options.tokenizer.empty()) {
    for (const char* name : {"tokenizer.json", "tokenizer_config.json"}) {
      std::filesystem::remove(dir / name, error);
      if (error) return absl::InternalError(absl::StrCat((dir / name).string(), ": cannot remove"));
    }
  }
  if (auto status = WriteConfigs(dir, options.config); !status.ok()) return status;
  if (options.tokenizer.empty()) return absl::OkStatus();
  return CopyTokenizer(options.tokenizer, dir);
}

}  // namespace

const std::vector<Preset>& Presets() {
  static const std::vector<Preset> presets = MakePresets();
  return presets;
}

absl::StatusOr<Preset> FindPreset(const std::string& name) {
  std::string known;
  for (const Preset& preset : Presets()) {
    if (preset.name == name) return preset;
    absl::StrAppend(&known, known.empty() ? "" : ", ", preset.name);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown preset \"", name, "\" (known: ", known, ")"));
}

absl::StatusOr<int64_t> MaxTokenId(const std::filesystem::path& tokenizer_json) {
  auto text = model::ReadFileToString(tokenizer_json);
  if (!text.ok()) return text.status();
  const nlohmann::json parsed = nlohmann::json::parse(*text, nullptr, false);
  auto bad = [&] {
    return absl::InvalidArgumentError(
        absl::StrCat(tokenizer_json.string(), ": not a Hugging Face tokenizer.json"));
  };
  if (!parsed.is_object() || !parsed.contains("model") || !parsed["model"].is_object() ||
      !parsed["model"].contains("vocab") || !parsed["model"]["vocab"].is_object()) {
    return bad();
  }
  int64_t max_id = -1;
  for (const auto& [token, id] : parsed["model"]["vocab"].items()) {
    if (!id.is_number_integer()) return bad();
    max_id = std::max(max_id, id.get<int64_t>());
  }
  if (parsed.contains("added_tokens") && parsed["added_tokens"].is_array()) {
    for (const auto& added : parsed["added_tokens"]) {
      if (added.is_object() && added.contains("id") && added["id"].is_number_integer()) {
        max_id = std::max(max_id, added["id"].get<int64_t>());
      }
    }
  }
  return max_id;
}

absl::StatusOr<std::filesystem::path> FindRepoFile(const std::string& relative) {
  std::vector<std::filesystem::path> tried = {relative};
  std::error_code error;
  const std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", error);
  if (!error) {
    for (std::filesystem::path dir = exe.parent_path(); !dir.empty(); dir = dir.parent_path()) {
      tried.push_back(dir / relative);
      if (dir == dir.root_path()) break;
    }
  }
  for (const auto& path : tried) {
    if (std::filesystem::is_regular_file(path, error)) return path;
  }
  std::string where;
  for (const auto& path : tried) absl::StrAppend(&where, "\n  ", path.string());
  return absl::NotFoundError(absl::StrCat(relative, " not found; looked at:", where));
}

absl::StatusOr<uint64_t> ParseByteSize(const std::string& text) {
  size_t digits = 0;
  while (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits]))) {
    ++digits;
  }
  const std::string suffix = text.substr(digits);
  struct Unit {
    const char* name;
    uint64_t factor;
  };
  static constexpr Unit kUnits[] = {{"", 1},
                                    {"B", 1},
                                    {"K", 1ull << 10},
                                    {"KiB", 1ull << 10},
                                    {"KB", 1000},
                                    {"M", 1ull << 20},
                                    {"MiB", 1ull << 20},
                                    {"MB", 1000000},
                                    {"G", 1ull << 30},
                                    {"GiB", 1ull << 30},
                                    {"GB", 1000000000}};
  if (digits == 0 || digits > 15) {
    return absl::InvalidArgumentError(absl::StrCat("bad size \"", text, "\""));
  }
  for (const Unit& unit : kUnits) {
    if (suffix == unit.name) return std::stoull(text.substr(0, digits)) * unit.factor;
  }
  return absl::InvalidArgumentError(absl::StrCat("bad size unit in \"", text, "\""));
}

absl::Status WriteModel(const std::filesystem::path& dir, const MakeModelOptions& options) {
  const ModelConfig& config = options.config;
  if (auto status = model::ValidateModelConfig(config); !status.ok()) return status;
  if (options.config_only) return WriteConfigOnly(dir, options);
  if (options.tokenizer.empty()) {
    if (config.vocab_size < kMinTinyVocab) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the built-in tokenizer needs a vocabulary of at least ", kMinTinyVocab, " tokens"));
    }
  } else {
    auto max_id = MaxTokenId(options.tokenizer);
    if (!max_id.ok()) return max_id.status();
    if (*max_id >= config.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat(options.tokenizer.string(), " has token id ",
                                                     *max_id, ", outside vocab_size ",
                                                     config.vocab_size));
    }
  }
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  if (error) return absl::InternalError(absl::StrCat(dir.string(), ": ", error.message()));
  if (auto status = RemoveOldWeights(dir); !status.ok()) return status;

  // Greedy sharding in tensor order, like transformers' save_pretrained(max_shard_size).
  const std::vector<model::TensorSpec> specs = model::ExpectedTensors(config);
  const uint64_t element = model::DTypeSize(config.dtype);
  std::vector<std::vector<const model::TensorSpec*>> shards(1);
  uint64_t total = 0, shard_size = 0;
  for (const model::TensorSpec& spec : specs) {
    const uint64_t bytes = uint64_t(spec.numel()) * element;
    if (options.shard_bytes > 0 && shard_size > 0 && shard_size + bytes > options.shard_bytes) {
      shards.emplace_back();
      shard_size = 0;
    }
    shards.back().push_back(&spec);
    shard_size += bytes;
    total += bytes;
  }
  uint64_t written = 0;
  auto on_bytes = [&](uint64_t bytes) {
    written += bytes;
    if (options.progress) options.progress(written, total);
  };
  nlohmann::ordered_json weight_map = nlohmann::ordered_json::object();
  for (size_t i = 0; i < shards.size(); ++i) {
    const std::string file_name =
        shards.size() == 1
            ? std::string("model.safetensors")
            : absl::StrFormat("model-%05d-of-%05d.safetensors", i + 1, shards.size());
    model::SafetensorsWriter writer;
    for (const model::TensorSpec* spec : shards[i]) {
      auto initializer = std::make_shared<model::TensorInitializer>(*spec, config, options.init);
      writer.Add(spec->name, config.dtype, spec->shape,
                 [initializer, dtype = config.dtype](int64_t count, void* out) {
                   initializer->Fill(dtype, count, out);
                 });
      weight_map[spec->name] = file_name;
    }
    if (auto status = WriteAtomically(
            dir / file_name,
            [&](const std::filesystem::path& target) { return writer.Write(target, on_bytes); });
        !status.ok()) {
      return status;
    }
  }
  if (shards.size() > 1) {
    const nlohmann::ordered_json index = {{"metadata", {{"total_size", total}}},
                                          {"weight_map", weight_map}};
    if (auto status = WriteText(dir / "model.safetensors.index.json", index.dump(2) + "\n");
        !status.ok()) {
      return status;
    }
  }
  if (auto status = WriteConfigs(dir, config); !status.ok()) return status;
  if (options.tokenizer.empty()) {
    if (auto status = WriteText(dir / "tokenizer.json", TinyTokenizerJson(config.vocab_size));
        !status.ok()) {
      return status;
    }
    return WriteText(dir / "tokenizer_config.json",
                     TinyTokenizerConfigJson(config.vocab_size, config.max_position_embeddings));
  }
  return CopyTokenizer(options.tokenizer, dir);
}

}  // namespace kvc::make_model
