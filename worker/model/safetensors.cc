#include "worker/model/safetensors.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"

namespace kvc::model {
namespace {

using nlohmann::json;

size_t ElementSize(absl::string_view dtype) {
  struct Known {
    absl::string_view name;
    size_t size;
  };
  static constexpr Known kKnown[] = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1},
      {"I16", 2},  {"U16", 2}, {"F16", 2}, {"BF16", 2},    {"I32", 4},
      {"U32", 4},  {"F32", 4}, {"F64", 8}, {"I64", 8},     {"U64", 8},
  };
  for (const Known& known : kKnown) {
    if (known.name == dtype) return known.size;
  }
  return 0;
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

// The JSON key with control characters and overlong names cut, safe to put in a message.
std::string Printable(absl::string_view name) {
  std::string out;
  for (char c : name.substr(0, 200)) out += (static_cast<unsigned char>(c) < 0x20) ? '?' : c;
  if (name.size() > 200) out += "...";
  return out;
}

absl::StatusOr<SafetensorsTensor> ParseTensorInfo(const std::string& name, const json& info,
                                                  absl::string_view file_name) {
  auto bad = [&](absl::string_view why) {
    return absl::DataLossError(
        absl::StrCat(file_name, ": tensor \"", Printable(name), "\": ", why));
  };
  if (!info.is_object()) return bad("header entry is not an object");
  SafetensorsTensor tensor;
  tensor.name = name;
  auto dtype = info.find("dtype");
  if (dtype == info.end() || !dtype->is_string()) return bad("missing or non-string \"dtype\"");
  tensor.dtype = dtype->get<std::string>();
  tensor.element_size = ElementSize(tensor.dtype);
  if (tensor.element_size == 0) {
    return bad(absl::StrCat("unknown dtype \"", Printable(tensor.dtype), "\""));
  }
  auto shape = info.find("shape");
  if (shape == info.end() || !shape->is_array()) return bad("missing or non-list \"shape\"");
  if (shape->size() > 16) return bad("shape has more than 16 dimensions");
  uint64_t bytes = tensor.element_size;
  for (const json& dim : *shape) {
    if (!dim.is_number_unsigned()) return bad(absl::StrCat("bad shape ", shape->dump()));
    const uint64_t value = dim.get<uint64_t>();
    if (value > uint64_t(std::numeric_limits<int64_t>::max()) ||
        __builtin_mul_overflow(bytes, value, &bytes)) {
      return bad(absl::StrCat("shape ", shape->dump(), " overflows"));
    }
    tensor.shape.push_back(int64_t(value));
  }
  auto offsets = info.find("data_offsets");
  if (offsets == info.end() || !offsets->is_array() || offsets->size() != 2 ||
      !(*offsets)[0].is_number_unsigned() || !(*offsets)[1].is_number_unsigned()) {
    return bad("\"data_offsets\" must be two non-negative integers");
  }
  tensor.begin = (*offsets)[0].get<uint64_t>();
  tensor.end = (*offsets)[1].get<uint64_t>();
  if (tensor.begin > tensor.end) {
    return bad(absl::StrCat("data_offsets [", tensor.begin, ", ", tensor.end, "] are reversed"));
  }
  if (tensor.end - tensor.begin != bytes) {
    return bad(absl::StrCat("shape ", ShapeString(tensor.shape), " of ", tensor.dtype, " needs ",
                            bytes, " bytes but data_offsets [", tensor.begin, ", ", tensor.end,
                            "] span ", tensor.end - tensor.begin));
  }
  return tensor;
}

absl::StatusOr<SafetensorsLayout> ParseLayout(std::string_view file_bytes,
                                              absl::string_view file_name) {
  auto bad = [&](absl::string_view why) {
    return absl::DataLossError(absl::StrCat(file_name, ": ", why));
  };
  if (file_bytes.size() < 8) {
    return bad(absl::StrCat("file is ", file_bytes.size(),
                            " bytes, too short for the 8-byte header length"));
  }
  uint64_t header_length = 0;
  for (int i = 7; i >= 0; --i) {
    header_length = (header_length << 8) | static_cast<unsigned char>(file_bytes[size_t(i)]);
  }
  if (header_length > kMaxSafetensorsHeaderBytes) {
    return bad(absl::StrCat("header length ", header_length, " exceeds the limit of ",
                            kMaxSafetensorsHeaderBytes));
  }
  if (header_length > file_bytes.size() - 8) {
    return bad(absl::StrCat("header length ", header_length, " runs past the end of the file (",
                            file_bytes.size(), " bytes): truncated?"));
  }
  const std::string_view header = file_bytes.substr(8, header_length);
  if (header.empty() || header[0] != '{') return bad("header does not start with '{'");
  json parsed = json::parse(header.begin(), header.end(), nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) return bad("header is not valid JSON");
  if (!parsed.is_object()) return bad("header is not a JSON object");

  SafetensorsLayout layout;
  layout.data_start = 8 + header_length;
  const uint64_t data_size = file_bytes.size() - layout.data_start;
  for (const auto& [name, info] : parsed.items()) {
    if (name == "__metadata__") {
      if (!info.is_object()) return bad("\"__metadata__\" is not an object");
      continue;
    }
    auto tensor = ParseTensorInfo(name, info, file_name);
    if (!tensor.ok()) return tensor.status();
    if (tensor->end > data_size) {
      return bad(absl::StrCat("tensor \"", Printable(name), "\": data_offsets [", tensor->begin,
                              ", ", tensor->end, "] run past the data area (", data_size,
                              " bytes): truncated?"));
    }
    layout.tensors.push_back(std::move(*tensor));
  }
  std::sort(layout.tensors.begin(), layout.tensors.end(),
            [](const SafetensorsTensor& a, const SafetensorsTensor& b) {
              return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
            });
  // The data area must be tiled exactly, as the format requires.
  uint64_t expected_begin = 0;
  const SafetensorsTensor* previous = nullptr;
  for (SafetensorsTensor& tensor : layout.tensors) {
    if (tensor.begin < expected_begin) {
      return bad(absl::StrCat("tensor \"", Printable(tensor.name), "\" [", tensor.begin, ", ",
                              tensor.end, ") overlaps tensor \"", Printable(previous->name), "\" [",
                              previous->begin, ", ", previous->end, ")"));
    }
    if (tensor.begin > expected_begin) {
      return bad(absl::StrCat("unused hole of ", tensor.begin - expected_begin,
                              " bytes before tensor \"", Printable(tensor.name), "\""));
    }
    expected_begin = tensor.end;
    previous = &tensor;
  }
  if (expected_begin != data_size) {
    return bad(absl::StrCat(data_size - expected_begin,
                            " bytes after the last tensor are not described by the header"));
  }
  for (SafetensorsTensor& tensor : layout.tensors) {
    tensor.begin += layout.data_start;
    tensor.end += layout.data_start;
  }
  return layout;
}

}  // namespace

absl::StatusOr<SafetensorsLayout> ParseSafetensors(std::string_view file_bytes,
                                                   absl::string_view file_name) {
  // The checks leave nlohmann nothing to throw for; the catch keeps any surprise (e.g. memory)
  // a status, since no exception may leave the module.
  try {
    return ParseLayout(file_bytes, file_name);
  } catch (const std::exception& error) {
    return absl::DataLossError(absl::StrCat(file_name, ": ", error.what()));
  }
}

SafetensorsFile::SafetensorsFile(std::unique_ptr<MappedFile> mapping, SafetensorsLayout layout)
    : mapping_(std::move(mapping)), layout_(std::move(layout)) {
  for (size_t i = 0; i < layout_.tensors.size(); ++i) by_name_[layout_.tensors[i].name] = i;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(
    const std::filesystem::path& path) {
  auto mapping = MappedFile::Open(path);
  if (!mapping.ok()) return mapping.status();
  auto layout = ParseSafetensors((*mapping)->bytes(), path.filename().string());
  if (!layout.ok()) return layout.status();
  return std::unique_ptr<SafetensorsFile>(
      new SafetensorsFile(std::move(*mapping), std::move(*layout)));
}

const SafetensorsTensor* SafetensorsFile::Find(absl::string_view name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &layout_.tensors[it->second];
}

absl::StatusOr<TensorView> SafetensorsFile::View(const SafetensorsTensor& tensor) const {
  TensorView view;
  if (tensor.dtype == "F32") {
    view.dtype = DType::kF32;
  } else if (tensor.dtype == "BF16") {
    view.dtype = DType::kBF16;
  } else if (tensor.dtype == "F16") {
    view.dtype = DType::kF16;
  } else {
    return absl::UnimplementedError(absl::StrCat(name(), ": tensor \"", tensor.name,
                                                 "\" has dtype ", tensor.dtype,
                                                 " (supported: F32, BF16, F16)"));
  }
  if (tensor.begin % tensor.element_size != 0) {
    return absl::DataLossError(absl::StrCat(name(), ": tensor \"", tensor.name,
                                            "\" at file offset ", tensor.begin,
                                            " is not aligned to its element size"));
  }
  view.shape = tensor.shape;
  view.data = mapping_->bytes().data() + tensor.begin;
  return view;
}

absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> SafetensorsCheckpoint::Open(
    const std::filesystem::path& dir) {
  std::unique_ptr<SafetensorsCheckpoint> checkpoint(new SafetensorsCheckpoint());
  const std::filesystem::path index_path = dir / "model.safetensors.index.json";
  std::error_code error;
  if (!std::filesystem::exists(index_path, error)) {
    const std::filesystem::path single = dir / "model.safetensors";
    if (!std::filesystem::exists(single, error)) {
      return absl::NotFoundError(absl::StrCat(
          dir.string(), ": neither model.safetensors nor model.safetensors.index.json"));
    }
    auto file = SafetensorsFile::Open(single);
    if (!file.ok()) return file.status();
    for (const SafetensorsTensor& tensor : (*file)->tensors()) {
      checkpoint->file_of_tensor_[tensor.name] = file->get();
    }
    checkpoint->files_.push_back(std::move(*file));
    return checkpoint;
  }

  auto text = ReadFileToString(index_path);
  if (!text.ok()) return text.status();
  auto bad = [](absl::string_view why) {
    return absl::DataLossError(absl::StrCat("model.safetensors.index.json: ", why));
  };
  json index = json::parse(text->begin(), text->end(), nullptr, /*allow_exceptions=*/false);
  if (index.is_discarded() || !index.is_object()) return bad("not a JSON object");
  auto weight_map = index.find("weight_map");
  if (weight_map == index.end() || !weight_map->is_object() || weight_map->empty()) {
    return bad("missing or empty \"weight_map\"");
  }
  std::map<std::string, const SafetensorsFile*, std::less<>> opened;
  for (const auto& [tensor_name, file_json] : weight_map->items()) {
    if (!file_json.is_string())
      return bad(absl::StrCat("\"", tensor_name, "\" maps to a non-string"));
    const std::string file_name = file_json.get<std::string>();
    // Shards must sit beside the index: no paths, so a hostile index cannot reach elsewhere.
    if (file_name.empty() || file_name == "." || file_name == ".." ||
        file_name.find('/') != std::string::npos) {
      return bad(absl::StrCat("\"", tensor_name, "\" maps to bad file name \"", file_name, "\""));
    }
    auto it = opened.find(file_name);
    if (it == opened.end()) {
      auto file = SafetensorsFile::Open(dir / file_name);
      if (!file.ok()) return file.status();
      it = opened.emplace(file_name, file->get()).first;
      checkpoint->files_.push_back(std::move(*file));
    }
    if (it->second->Find(tensor_name) == nullptr) {
      return absl::NotFoundError(absl::StrCat("model.safetensors.index.json maps tensor \"",
                                              tensor_name, "\" to ", file_name,
                                              ", which does not contain it"));
    }
    checkpoint->file_of_tensor_[tensor_name] = it->second;
  }
  return checkpoint;
}

bool SafetensorsCheckpoint::Contains(absl::string_view name) const {
  return file_of_tensor_.find(name) != file_of_tensor_.end();
}

std::vector<std::string> SafetensorsCheckpoint::TensorNames() const {
  std::vector<std::string> names;
  for (const auto& [name, file] : file_of_tensor_) names.push_back(name);
  return names;
}

std::string SafetensorsCheckpoint::FileOf(absl::string_view name) const {
  auto it = file_of_tensor_.find(name);
  return it == file_of_tensor_.end() ? "" : it->second->name();
}

absl::StatusOr<TensorView> SafetensorsCheckpoint::Get(
    absl::string_view name, const std::optional<std::vector<int64_t>>& shape,
    std::optional<DType> dtype) const {
  auto it = file_of_tensor_.find(name);
  if (it == file_of_tensor_.end()) {
    const std::string where =
        files_.size() == 1 ? files_[0]->name() : std::string("model.safetensors.index.json");
    return absl::NotFoundError(absl::StrCat(where, ": missing tensor \"", name, "\""));
  }
  const SafetensorsFile& file = *it->second;
  auto view = file.View(*file.Find(name));
  if (!view.ok()) return view.status();
  if (shape && view->shape != *shape) {
    return absl::InvalidArgumentError(absl::StrCat(file.name(), ": tensor \"", name,
                                                   "\" has shape ", ShapeString(view->shape),
                                                   ", expected ", ShapeString(*shape)));
  }
  if (dtype && view->dtype != *dtype) {
    return absl::InvalidArgumentError(absl::StrCat(file.name(), ": tensor \"", name,
                                                   "\" has dtype ", DTypeName(view->dtype),
                                                   ", expected ", DTypeName(*dtype)));
  }
  return view;
}

uint64_t SafetensorsCheckpoint::total_bytes() const {
  uint64_t total = 0;
  for (const auto& file : files_) total += file->mapping().bytes().size();
  return total;
}

void SafetensorsCheckpoint::Prefault(const LoadProgressFn& progress, uint64_t step_bytes) const {
  const uint64_t total = total_bytes();
  uint64_t loaded = 0;
  if (progress) progress(0, total);
  for (const auto& file : files_) {
    const uint64_t size = file->mapping().bytes().size();
    for (uint64_t offset = 0; offset < size; offset += step_bytes) {
      const uint64_t length = std::min(step_bytes, size - offset);
      file->mapping().Prefault(offset, length);
      loaded += length;
      if (progress) progress(loaded, total);
    }
  }
}

}  // namespace kvc::model
