// Writes deterministic random-weight models in Hugging Face layout: config.json,
// generation_config.json, model.safetensors (or model-0000i-of-0000n.safetensors shards plus
// model.safetensors.index.json), tokenizer.json and tokenizer_config.json. Weights come from
// worker/model/random_weights.h, so LoadModel(dir) equals MakeRandomWeights(config, init).
// Functions only; WriteModel may run concurrently for different directories.
#ifndef KVCLUSTER_TOOLS_KVC_MAKE_MODEL_MAKE_MODEL_H_
#define KVCLUSTER_TOOLS_KVC_MAKE_MODEL_MAKE_MODEL_H_

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "worker/model/model.h"
#include "worker/model/random_weights.h"

namespace kvc::make_model {

struct Preset {
  std::string name;
  std::string description;
  model::ModelConfig config;
  // Repo-relative tokenizer.json the preset uses by default; empty: the built-in tiny one.
  std::string default_tokenizer;
};

// "tiny", "llama-3.2-1b-shape", "qwen3-0.6b-shape", "llama-3.1-8b-shape".
const std::vector<Preset>& Presets();
absl::StatusOr<Preset> FindPreset(const std::string& name);

struct MakeModelOptions {
  model::ModelConfig config;
  model::InitOptions init;
  // Shard when the weights exceed this many bytes (0: never); a tensor larger than a shard
  // gets a shard of its own.
  uint64_t shard_bytes = 0;
  // tokenizer.json to copy (with tokenizer_config.json beside it, if any); empty writes the
  // built-in byte-level BPE tokenizer sized to config.vocab_size (none when config_only).
  std::filesystem::path tokenizer;
  // Only config.json and generation_config.json (and the tokenizer when one is given): the
  // sizes without the weights, all the sim backend reads. Removes weight and tokenizer files
  // of an earlier run in the directory.
  bool config_only = false;
  // (bytes of weights written, total bytes); called about every 4 MiB.
  std::function<void(uint64_t, uint64_t)> progress;
};

absl::Status WriteModel(const std::filesystem::path& dir, const MakeModelOptions& options);

// The largest token id a tokenizer.json defines (model vocab and added tokens).
absl::StatusOr<int64_t> MaxTokenId(const std::filesystem::path& tokenizer_json);

// Resolves a repo-relative path: as given (relative to the working directory), then under
// each parent of the running executable's directory. NOT_FOUND lists where it looked.
absl::StatusOr<std::filesystem::path> FindRepoFile(const std::string& relative);

// Parses "123", "64K", "100MB", "2GiB", "5GB" (powers of 1000 for KB/MB/GB, 1024 for
// K/M/G/KiB/MiB/GiB).
absl::StatusOr<uint64_t> ParseByteSize(const std::string& text);

}  // namespace kvc::make_model

#endif  // KVCLUSTER_TOOLS_KVC_MAKE_MODEL_MAKE_MODEL_H_
