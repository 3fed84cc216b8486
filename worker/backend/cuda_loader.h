// Finds and loads the CUDA backend at run time.
//
// The CUDA backend is a shared library of its own, libkvc_backend_cuda.so, installed beside
// kvc-worker. kvc-worker links no CUDA library, so one binary runs the cpu and sim backends
// on hosts without a CUDA runtime (a CPU container image from a GPU-capable build, say), and
// the cuda backend where the library and the CUDA runtime are present. The library exports a
// single C function that hands out the entry points below; both sides are built from this
// tree, and the ABI version guards against mixing builds.
//
// Thread-safety: LoadCudaBackend may be called from any thread; the library is loaded once and
// stays loaded for the life of the process.
#ifndef KVCLUSTER_WORKER_BACKEND_CUDA_LOADER_H_
#define KVCLUSTER_WORKER_BACKEND_CUDA_LOADER_H_

#include <cstddef>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "worker/backend/backend.h"
#include "worker/backend/cuda/cuda_backend.h"
#include "worker/model/model.h"

namespace kvc::backend {

// Bumped whenever CudaBackendEntryPoints or CudaBackendOptions change.
inline constexpr int kCudaBackendAbiVersion = 1;

// The library's file name, looked up beside the running program, then in ../lib from it, then
// through the dynamic loader's search path (LD_LIBRARY_PATH, ld.so.cache).
inline constexpr char kCudaBackendLibrary[] = "libkvc_backend_cuda.so";

// The name of the one symbol the library exports:
//   extern "C" const CudaBackendEntryPoints* kvc_cuda_backend_entry_points(int abi_version,
//                                                                          size_t options_size);
// It returns null when abi_version or sizeof(CudaBackendOptions) differ from its own.
inline constexpr char kCudaBackendEntrySymbol[] = "kvc_cuda_backend_entry_points";

// The functions of cuda_backend.h, as the library provides them.
struct CudaBackendEntryPoints {
  absl::Status (*device_status)(int device);
  std::string (*device_description)(int device);
  absl::StatusOr<std::unique_ptr<Backend>> (*create)(const model::ModelWeights& weights,
                                                     const CudaBackendOptions& options);
};

// The entry points of the CUDA backend library. FAILED_PRECONDITION saying what is wrong when
// no library is found (this build has no CUDA backend), when it cannot be loaded (its CUDA
// runtime libraries are missing, say) or when it comes from another build.
absl::StatusOr<const CudaBackendEntryPoints*> LoadCudaBackend();

}  // namespace kvc::backend

#endif  // KVCLUSTER_WORKER_BACKEND_CUDA_LOADER_H_
