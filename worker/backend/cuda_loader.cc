#include "worker/backend/cuda_loader.h"

#include <dlfcn.h>

#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace kvc::backend {
namespace {

using EntryFunction = const CudaBackendEntryPoints* (*)(int abi_version, size_t options_size);

// Where the library may be, most specific first.
std::vector<std::string> CandidatePaths() {
  std::vector<std::string> paths;
  std::error_code error;
  const std::filesystem::path program = std::filesystem::read_symlink("/proc/self/exe", error);
  if (!error) {
    const std::filesystem::path dir = program.parent_path();
    paths.push_back((dir / kCudaBackendLibrary).string());
    paths.push_back((dir.parent_path() / "lib" / kCudaBackendLibrary).lexically_normal().string());
  }
  return paths;
}

absl::StatusOr<const CudaBackendEntryPoints*> Load() {
  void* handle = nullptr;
  std::string loaded_from;
  std::vector<std::string> looked_in;
  for (const std::string& path : CandidatePaths()) {
    std::error_code error;
    if (!std::filesystem::exists(path, error)) {
      looked_in.push_back(path);
      continue;
    }
    handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) {
      // The library is there but does not load: that is the error to report, not "missing".
      return absl::FailedPreconditionError(
          absl::StrCat("cannot load the CUDA backend ", path, ": ", dlerror()));
    }
    loaded_from = path;
    break;
  }
  if (handle == nullptr) {
    handle = dlopen(kCudaBackendLibrary, RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) {
      const std::string reason = dlerror();
      looked_in.push_back("the library search path");
      return absl::FailedPreconditionError(
          absl::StrCat("this kvc-worker has no CUDA backend: ", kCudaBackendLibrary, " is not in ",
                       absl::StrJoin(looked_in, ", "), " (", reason,
                       "); it is built beside kvc-worker when nvcc is found at configure time"));
    }
    loaded_from = kCudaBackendLibrary;
  }
  auto entry = reinterpret_cast<EntryFunction>(dlsym(handle, kCudaBackendEntrySymbol));
  if (entry == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        loaded_from, " is not a CUDA backend library (no symbol ", kCudaBackendEntrySymbol, ")"));
  }
  const CudaBackendEntryPoints* entry_points =
      entry(kCudaBackendAbiVersion, sizeof(CudaBackendOptions));
  if (entry_points == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        loaded_from, " comes from another build of kvcluster (its interface differs from this ",
        "kvc-worker's); install the library built with this program"));
  }
  return entry_points;
}

}  // namespace

absl::StatusOr<const CudaBackendEntryPoints*> LoadCudaBackend() {
  // Loaded once: a second dlopen would return the same handle, and the answer cannot change.
  static const auto* const loaded = new absl::StatusOr<const CudaBackendEntryPoints*>(Load());
  return *loaded;
}

}  // namespace kvc::backend
