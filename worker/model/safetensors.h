// Reading the safetensors format (https://huggingface.co/docs/safetensors): an 8-byte
// little-endian header length N, N bytes of JSON mapping tensor names to {dtype, shape,
// data_offsets}, then the data area. Files are memory-mapped; views point into the mapping.
//
// Validation is strict because the input is untrusted: the header must lie inside the file,
// be a JSON object, and every tensor must have a known dtype, a shape whose byte size equals its
// offsets' span, and offsets that tile the data area exactly (no overlap, no hole, nothing
// past the end). Every error names the file and, where there is one, the tensor. Nothing is
// read outside the mapping whatever the bytes say.
//
// Thread-safety: both classes are immutable after Open and may be read from any thread.
#ifndef KVCLUSTER_WORKER_MODEL_SAFETENSORS_H_
#define KVCLUSTER_WORKER_MODEL_SAFETENSORS_H_

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "worker/model/file_util.h"
#include "worker/model/model.h"

namespace kvc::model {

// Headers larger than this are refused before parsing (the reference implementation's limit).
inline constexpr uint64_t kMaxSafetensorsHeaderBytes = 100 << 20;

struct SafetensorsTensor {
  std::string name;
  std::string dtype;  // as stored: "F32", "BF16", "I64"...
  size_t element_size = 0;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte offsets from the start of the file
  uint64_t end = 0;
};

struct SafetensorsLayout {
  uint64_t data_start = 0;                 // 8 + header length
  std::vector<SafetensorsTensor> tensors;  // sorted by offset
};

// Parses and validates the complete image of a safetensors file. `file_name` only labels
// errors. DATA_LOSS for malformed or truncated files.
absl::StatusOr<SafetensorsLayout> ParseSafetensors(std::string_view file_bytes,
                                                   absl::string_view file_name);

// One mapped and validated .safetensors file.
class SafetensorsFile {
 public:
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::filesystem::path& path);

  const SafetensorsTensor* Find(absl::string_view name) const;
  const std::vector<SafetensorsTensor>& tensors() const { return layout_.tensors; }
  const MappedFile& mapping() const { return *mapping_; }
  std::string name() const { return mapping_->path().filename().string(); }

  // A view of `tensor` (one of tensors()). Fails with UNIMPLEMENTED for dtypes a model cannot
  // use and DATA_LOSS when the data is not aligned to its element size.
  absl::StatusOr<TensorView> View(const SafetensorsTensor& tensor) const;

 private:
  SafetensorsFile(std::unique_ptr<MappedFile> mapping, SafetensorsLayout layout);
  std::unique_ptr<MappedFile> mapping_;
  SafetensorsLayout layout_;
  std::map<std::string, size_t, std::less<>> by_name_;
};

// Called while prefaulting: bytes brought in so far, and the total.
using LoadProgressFn = std::function<void(uint64_t loaded_bytes, uint64_t total_bytes)>;

// A model's weights on disk: `model.safetensors.index.json` and the shards its weight_map
// names, or a single `model.safetensors`.
class SafetensorsCheckpoint {
 public:
  static absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> Open(
      const std::filesystem::path& dir);

  bool Contains(absl::string_view name) const;
  // The tensor `name`, checked against `shape` and `dtype` when given. NOT_FOUND when absent,
  // INVALID_ARGUMENT on a mismatch; the message names the file and the tensor.
  absl::StatusOr<TensorView> Get(absl::string_view name,
                                 const std::optional<std::vector<int64_t>>& shape = std::nullopt,
                                 std::optional<DType> dtype = std::nullopt) const;
  // Every tensor name, sorted.
  std::vector<std::string> TensorNames() const;
  // The file that holds `name` (for messages), or "" when absent.
  std::string FileOf(absl::string_view name) const;

  uint64_t total_bytes() const;  // of all files
  size_t num_files() const { return files_.size(); }
  // Reads every page of every file, reporting progress about every `step_bytes`.
  void Prefault(const LoadProgressFn& progress, uint64_t step_bytes = 64 << 20) const;

 private:
  SafetensorsCheckpoint() = default;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const SafetensorsFile*, std::less<>> file_of_tensor_;
};

}  // namespace kvc::model

#endif  // KVCLUSTER_WORKER_MODEL_SAFETENSORS_H_
