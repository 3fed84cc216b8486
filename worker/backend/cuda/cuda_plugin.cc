// The one exported function of libkvc_backend_cuda.so (see worker/backend/cuda_loader.h).
#include <cstddef>

#include "worker/backend/cuda/cuda_backend.h"
#include "worker/backend/cuda_loader.h"

namespace {

absl::Status DeviceStatus(int device) { return kvc::backend::CudaDeviceStatus(device); }
std::string DeviceDescription(int device) { return kvc::backend::CudaDeviceDescription(device); }

}  // namespace

extern "C" __attribute__((visibility("default"))) const kvc::backend::CudaBackendEntryPoints*
kvc_cuda_backend_entry_points(int abi_version, size_t options_size) {
  static constexpr kvc::backend::CudaBackendEntryPoints kEntryPoints = {
      .device_status = &DeviceStatus,
      .device_description = &DeviceDescription,
      .create = &kvc::backend::CreateCudaBackend,
  };
  if (abi_version != kvc::backend::kCudaBackendAbiVersion ||
      options_size != sizeof(kvc::backend::CudaBackendOptions)) {
    return nullptr;
  }
  return &kEntryPoints;
}
