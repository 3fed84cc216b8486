// File access for the loader: whole small files (JSON) as strings, and read-only memory
// mappings for the large weight files so that tensor views point at page-cache memory with no
// copy. MappedFile is immutable after Open and safe to read from any thread.
#ifndef KVCLUSTER_WORKER_MODEL_FILE_UTIL_H_
#define KVCLUSTER_WORKER_MODEL_FILE_UTIL_H_

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace kvc::model {

// Errors name the path. Refuses files over `max_bytes` (JSON files are small; a huge one is a
// mistake, not something to read into memory).
absl::StatusOr<std::string> ReadFileToString(const std::filesystem::path& path,
                                             size_t max_bytes = size_t{1} << 30);

// A read-only private mapping of a whole file. Note: if another process truncates the file
// while it is mapped, reading the lost pages raises SIGBUS; model files are not expected to
// change under a running worker.
class MappedFile {
 public:
  static absl::StatusOr<std::unique_ptr<MappedFile>> Open(const std::filesystem::path& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  std::string_view bytes() const { return {static_cast<const char*>(data_), size_}; }
  const std::filesystem::path& path() const { return path_; }

  // Brings [offset, offset + length) into memory: MADV_WILLNEED, then reads one byte per page
  // so the pages are resident before the first request needs them.
  void Prefault(size_t offset, size_t length) const;

 private:
  MappedFile(std::filesystem::path path, void* data, size_t size)
      : path_(std::move(path)), data_(data), size_(size) {}
  std::filesystem::path path_;
  void* data_;  // nullptr for an empty file (mmap cannot map zero bytes)
  size_t size_;
};

}  // namespace kvc::model

#endif  // KVCLUSTER_WORKER_MODEL_FILE_UTIL_H_
