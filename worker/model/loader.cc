#include "worker/model/loader.h"

#include <memory>
#include <optional>
#include <set>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "worker/model/tensor_specs.h"

namespace kvc::model {

absl::StatusOr<ModelWeights> LoadModel(const std::filesystem::path& dir,
                                       const LoadOptions& options) {
  auto parsed = LoadModelConfig(dir);
  if (!parsed.ok()) return parsed.status();
  auto opened = SafetensorsCheckpoint::Open(dir);
  if (!opened.ok()) {
    return absl::Status(opened.status().code(),
                        absl::StrCat(dir.string(), ": ", opened.status().message()));
  }
  std::shared_ptr<const SafetensorsCheckpoint> checkpoint = std::move(*opened);

  ModelWeights weights;
  weights.config = parsed->config;
  if (!parsed->dtype_given) {
    // No torch_dtype: the embedding's stored dtype stands for the model's.
    auto embed = checkpoint->Get("model.embed_tokens.weight");
    if (!embed.ok()) {
      return absl::Status(embed.status().code(),
                          absl::StrCat(dir.string(), ": ", embed.status().message()));
    }
    weights.config.dtype = embed->dtype;
  }
  const std::optional<DType> dtype =
      options.require_config_dtype ? std::optional<DType>(weights.config.dtype) : std::nullopt;
  weights.layers.resize(size_t(weights.config.num_layers));
  for (const TensorSpec& spec : ExpectedTensors(weights.config)) {
    auto view = checkpoint->Get(spec.name, spec.shape, dtype);
    if (!view.ok()) {
      return absl::Status(view.status().code(),
                          absl::StrCat(dir.string(), ": ", view.status().message()));
    }
    SlotOf(weights, spec) = std::move(*view);
  }
  if (!options.allow_unexpected_tensors) {
    std::set<std::string, std::less<>> expected;
    for (const TensorSpec& spec : ExpectedTensors(weights.config)) expected.insert(spec.name);
    for (const std::string& name : checkpoint->TensorNames()) {
      const bool harmless = name.ends_with("rotary_emb.inv_freq") ||
                            (name == "lm_head.weight" && weights.config.tie_word_embeddings);
      if (!harmless && !expected.contains(name)) {
        return absl::InvalidArgumentError(
            absl::StrCat(dir.string(), ": ", checkpoint->FileOf(name), ": unexpected tensor \"",
                         name, "\" (config.json does not describe these weights)"));
      }
    }
  }
  // A tied model uses the embedding as the output projection even if the file also stores an
  // lm_head (as some exporters do), exactly as transformers does.
  if (weights.config.tie_word_embeddings) weights.lm_head = weights.embed_tokens;
  if (options.prefault) {
    checkpoint->Prefault(options.progress);
  } else if (options.progress) {
    options.progress(checkpoint->total_bytes(), checkpoint->total_bytes());
  }
  weights.storage = std::move(checkpoint);
  return weights;
}

}  // namespace kvc::model
