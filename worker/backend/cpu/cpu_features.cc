// Compiled without -mavx2 so that the check itself runs on any x86-64 CPU.
#include "worker/backend/cpu/kernels.h"

namespace kvc::backend::cpu {

bool CpuSupportsKernels() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
         __builtin_cpu_supports("f16c");
}

}  // namespace kvc::backend::cpu
