// Compiled without -mavx2 so that the check itself runs on any x86-64 CPU.
#include "worker/backend/cpu/kernels.h"

namespace kvc::backend::cpu {

bool CpuSupportsKernels() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
         __builtin_cpu_supports("f16c");
}

bool CpuSupportsAvx512Kernels() {
  __builtin_cpu_init();
  // libgcc reports AVX-512 only when the OS saves the ZMM registers (XCR0), as needed here.
  return CpuSupportsKernels() && __builtin_cpu_supports("avx512f");
}

}  // namespace kvc::backend::cpu
