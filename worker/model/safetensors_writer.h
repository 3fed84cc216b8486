// Writes safetensors files in the layout Hugging Face's writer produces: header JSON padded
// with spaces to a multiple of 8 bytes (so every tensor stays aligned), tensors back to back
// in the order added. Data is streamed from producers in bounded chunks, so writing a
// multi-GB model needs only a few MiB of memory.
// Thread-safety: a writer is used by one thread at a time.
#ifndef KVCLUSTER_WORKER_MODEL_SAFETENSORS_WRITER_H_
#define KVCLUSTER_WORKER_MODEL_SAFETENSORS_WRITER_H_

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "worker/model/model.h"

namespace kvc::model {

class SafetensorsWriter {
 public:
  // Writes the next `count` elements of the tensor into `out` (called in order).
  using Producer = std::function<void(int64_t count, void* out)>;

  void Add(std::string name, DType dtype, std::vector<int64_t> shape, Producer producer);
  // Header JSON + 8-byte length prefix for what was added.
  std::string EncodeHeader() const;
  uint64_t data_bytes() const;
  uint64_t file_bytes() const { return EncodeHeader().size() + data_bytes(); }

  // Writes the file; `on_bytes(n)` reports each chunk of n data bytes written.
  absl::Status Write(const std::filesystem::path& path,
                     const std::function<void(uint64_t)>& on_bytes = {}) const;

 private:
  struct Entry {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    Producer producer;
    uint64_t bytes;
  };
  std::vector<Entry> entries_;
};

}  // namespace kvc::model

#endif  // KVCLUSTER_WORKER_MODEL_SAFETENSORS_WRITER_H_
