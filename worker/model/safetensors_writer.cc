#include "worker/model/safetensors_writer.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace kvc::model {

void SafetensorsWriter::Add(std::string name, DType dtype, std::vector<int64_t> shape,
                            Producer producer) {
  uint64_t numel = 1;
  for (int64_t d : shape) numel *= uint64_t(d);
  entries_.push_back(
      {std::move(name), dtype, std::move(shape), std::move(producer), numel * DTypeSize(dtype)});
}

uint64_t SafetensorsWriter::data_bytes() const {
  uint64_t total = 0;
  for (const Entry& entry : entries_) total += entry.bytes;
  return total;
}

std::string SafetensorsWriter::EncodeHeader() const {
  nlohmann::json header = nlohmann::json::object();
  header["__metadata__"] = {{"format", "pt"}};
  uint64_t offset = 0;
  for (const Entry& entry : entries_) {
    header[entry.name] = {{"dtype", DTypeName(entry.dtype)},
                          {"shape", entry.shape},
                          {"data_offsets", {offset, offset + entry.bytes}}};
    offset += entry.bytes;
  }
  std::string json = header.dump();
  json.resize((json.size() + 8 + 7) / 8 * 8 - 8, ' ');
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[size_t(i)] = char((uint64_t(json.size()) >> (8 * i)) & 0xff);
  return out + json;
}

absl::Status SafetensorsWriter::Write(const std::filesystem::path& path,
                                      const std::function<void(uint64_t)>& on_bytes) const {
  std::FILE* file = std::fopen(path.c_str(), "wb");
  if (file == nullptr) {
    return absl::InternalError(
        absl::StrCat(path.string(), ": cannot create: ", std::strerror(errno)));
  }
  const std::string header = EncodeHeader();
  bool ok = std::fwrite(header.data(), 1, header.size(), file) == header.size();
  constexpr uint64_t kChunkBytes = 4 << 20;
  std::vector<char> chunk(kChunkBytes);
  for (const Entry& entry : entries_) {
    const size_t element = DTypeSize(entry.dtype);
    for (uint64_t done = 0; ok && done < entry.bytes;) {
      const uint64_t bytes = std::min(kChunkBytes, entry.bytes - done);
      entry.producer(int64_t(bytes / element), chunk.data());
      ok = std::fwrite(chunk.data(), 1, bytes, file) == bytes;
      done += bytes;
      if (on_bytes) on_bytes(bytes);
    }
  }
  const int saved_errno = errno;
  if (std::fclose(file) != 0) ok = false;
  if (!ok) {
    return absl::InternalError(
        absl::StrCat(path.string(), ": write failed: ", std::strerror(saved_errno)));
  }
  return absl::OkStatus();
}

}  // namespace kvc::model
