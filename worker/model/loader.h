// LoadModel: a Hugging Face model directory -> ModelWeights whose views point into the
// memory-mapped safetensors files. Every tensor the config implies is checked for presence,
// shape and dtype before anything is returned, so backends can trust ModelWeights blindly.
// Thread-safety: LoadModel is reentrant; the result is immutable and shareable.
#ifndef KVCLUSTER_WORKER_MODEL_LOADER_H_
#define KVCLUSTER_WORKER_MODEL_LOADER_H_

#include <filesystem>

#include "absl/status/statusor.h"
#include "worker/model/config.h"
#include "worker/model/model.h"
#include "worker/model/safetensors.h"

namespace kvc::model {

struct LoadOptions {
  // Read every page of the weight files before returning, so the first request does not pay
  // for page faults from disk. Off by default: tests and tools that touch few weights skip it.
  bool prefault = false;
  // Called while prefaulting with (bytes read, total bytes of the files), about every 64 MiB
  // and once at the end. The worker prints it to stderr.
  LoadProgressFn progress;
  // Every tensor must be stored in config.json's torch_dtype. When false, each tensor may be
  // any of F32/BF16/F16 and TensorView::dtype says which.
  bool require_config_dtype = true;
  // A tensor the config does not account for (say an o_proj.bias when config.json has no
  // attention_bias) means config and weights disagree, and ignoring it would compute the
  // wrong function; such files are refused unless this is set. Rotary inv_freq buffers and a
  // tied model's redundant lm_head.weight are always accepted.
  bool allow_unexpected_tensors = false;
};

absl::StatusOr<ModelWeights> LoadModel(const std::filesystem::path& dir,
                                       const LoadOptions& options = {});

}  // namespace kvc::model

#endif  // KVCLUSTER_WORKER_MODEL_LOADER_H_
