#include "worker/backend/sim/cost_model.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"
#include "worker/model/file_util.h"
#include "worker/model/tensor_specs.h"

namespace kvc::backend::sim {
namespace {

using json = nlohmann::json;

struct NumberField {
  const char* name;
  double SimProfile::*field;
  double min;          // exclusive when min_exclusive
  bool min_exclusive;  // (min, max] instead of [min, max]
  double max;
};

constexpr NumberField kNumberFields[] = {
    {"memory_bandwidth_gb_per_s", &SimProfile::memory_bandwidth_gb_per_s, 0, true, 1e6},
    {"memory_efficiency", &SimProfile::memory_efficiency, 0, true, 1},
    {"peak_tflops", &SimProfile::peak_tflops, 0, true, 1e6},
    {"compute_efficiency", &SimProfile::compute_efficiency, 0, true, 1},
    {"step_overhead_us", &SimProfile::step_overhead_us, 0, false, 1e7},
};

std::string RangeText(const NumberField& f) {
  return absl::StrCat(f.min_exclusive ? "(" : "[", f.min, ", ", f.max, "]");
}

}  // namespace

absl::Status ValidateSimProfile(const SimProfile& profile) {
  for (const NumberField& f : kNumberFields) {
    const double value = profile.*f.field;
    const bool above_min = f.min_exclusive ? value > f.min : value >= f.min;
    if (!std::isfinite(value) || !above_min || value > f.max) {
      return absl::InvalidArgumentError(absl::StrCat("sim profile field \"", f.name, "\" is ",
                                                     value, ", outside ", RangeText(f)));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<SimProfile> ParseSimProfile(absl::string_view text) {
  json parsed;
  try {
    parsed = json::parse(text.begin(), text.end());
  } catch (const json::parse_error& error) {
    return absl::InvalidArgumentError(
        absl::StrCat("sim profile: bad JSON at byte ", error.byte, ": ", error.what()));
  }
  if (!parsed.is_object()) {
    return absl::InvalidArgumentError("sim profile: expected a JSON object of profile fields");
  }
  SimProfile profile;
  for (const auto& [key, value] : parsed.items()) {
    if (key == "name") {
      if (!value.is_string()) {
        return absl::InvalidArgumentError("sim profile field \"name\" must be a string");
      }
      profile.name = value.get<std::string>();
      continue;
    }
    const NumberField* field = nullptr;
    for (const NumberField& f : kNumberFields) {
      if (key == f.name) field = &f;
    }
    if (field == nullptr) {
      std::string known = "name";
      for (const NumberField& f : kNumberFields) absl::StrAppend(&known, ", ", f.name);
      return absl::InvalidArgumentError(
          absl::StrCat("sim profile: unknown field \"", key, "\" (known: ", known, ")"));
    }
    if (!value.is_number()) {
      return absl::InvalidArgumentError(
          absl::StrCat("sim profile field \"", key, "\" must be a number, got ", value.dump()));
    }
    profile.*field->field = value.get<double>();
  }
  if (absl::Status status = ValidateSimProfile(profile); !status.ok()) return status;
  return profile;
}

absl::StatusOr<SimProfile> LoadSimProfile(const std::filesystem::path& path) {
  std::error_code error;
  if (!std::filesystem::exists(path, error)) {
    return absl::NotFoundError(absl::StrCat(path.string(), ": no such sim profile file"));
  }
  absl::StatusOr<std::string> text = model::ReadFileToString(path);
  if (!text.ok()) return text.status();
  absl::StatusOr<SimProfile> profile = ParseSimProfile(*text);
  if (!profile.ok()) {
    return absl::Status(profile.status().code(),
                        absl::StrCat(path.string(), ": ", profile.status().message()));
  }
  return profile;
}

StepShape StepShape::Of(const ForwardBatch& batch) {
  StepShape shape;
  shape.sequences = batch.num_sequences();
  for (int s = 0; s < batch.num_sequences(); ++s) {
    const int64_t n = batch.num_new_tokens[s];
    const int64_t context = batch.context_lens[s];
    if (n == 1) {
      ++shape.decode_sequences;
    } else {
      shape.prefill_tokens += n;
    }
    shape.kv_tokens_read += context;
    // New token j (0-based) sits at position context - n + j and attends to that many + 1.
    shape.attention_pairs += n * context - n * (n - 1) / 2;
  }
  return shape;
}

CostModel::CostModel(const model::ModelConfig& config, model::DType kv_dtype,
                     const SimProfile& profile)
    : profile_(profile) {
  const double weight_element = double(model::DTypeSize(config.dtype));
  double layer_params = 0;
  for (const model::TensorSpec& spec : model::ExpectedTensors(config)) {
    if (spec.layer >= 0) layer_params += double(spec.numel());
    if (spec.kind == model::TensorKind::kLinear || spec.kind == model::TensorKind::kResidualOut) {
      layer_matrix_params_ += double(spec.numel());
    }
  }
  lm_head_params_ = double(config.vocab_size) * config.hidden_size;
  // Every step reads each layer, the final norm and the lm_head (the embedding when tied).
  weight_bytes_ = (layer_params + config.hidden_size + lm_head_params_) * weight_element;
  kv_bytes_per_token_ = double(config.KvBytesPerToken(kv_dtype));
  attention_flops_per_pair_ = 4.0 * config.num_layers * config.num_heads * config.head_dim;
  bytes_per_second_ = profile.memory_bandwidth_gb_per_s * 1e9 * profile.memory_efficiency;
  flops_per_second_ = profile.peak_tflops * 1e12 * profile.compute_efficiency;
}

absl::Duration CostModel::StepTime(const StepShape& shape) const {
  if (shape.sequences == 0) return absl::ZeroDuration();
  const double bytes = weight_bytes_ + double(shape.kv_tokens_read) * kv_bytes_per_token_ +
                       double(shape.new_tokens()) * kv_bytes_per_token_;
  const double flops = 2.0 * layer_matrix_params_ * double(shape.new_tokens()) +
                       2.0 * lm_head_params_ * double(shape.sequences) +
                       attention_flops_per_pair_ * double(shape.attention_pairs);
  const double seconds = profile_.step_overhead_us * 1e-6 +
                         std::max(bytes / bytes_per_second_, flops / flops_per_second_);
  return absl::Seconds(seconds);
}

std::string CostModel::Describe() const {
  auto ms = [&](const StepShape& shape) { return absl::ToDoubleMilliseconds(StepTime(shape)); };
  auto decode = [](int64_t batch, int64_t context) {
    return StepShape{.decode_sequences = batch,
                     .sequences = batch,
                     .kv_tokens_read = batch * context,
                     .attention_pairs = batch * context};
  };
  const StepShape prefill{.prefill_tokens = 2048,
                          .sequences = 1,
                          .kv_tokens_read = 2048,
                          .attention_pairs = 2048 * 2049 / 2};
  return absl::StrFormat(
      "profile %s (%.0f GB/s x %.2f, %.0f TFLOPS x %.2f, %.0f us per step); weights %.2f GB, "
      "KV %.0f KiB/token; decode step batch 1 @1k context %.2f ms, batch 64 @2k %.2f ms; "
      "prefill 2048 tokens %.2f ms",
      profile_.name, profile_.memory_bandwidth_gb_per_s, profile_.memory_efficiency,
      profile_.peak_tflops, profile_.compute_efficiency, profile_.step_overhead_us,
      weight_bytes_ / 1e9, kv_bytes_per_token_ / 1024, ms(decode(1, 1024)), ms(decode(64, 2048)),
      ms(prefill));
}

}  // namespace kvc::backend::sim
