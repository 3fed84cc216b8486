# Decides whether the CUDA parts are built. KVC_HAVE_CUDA is the result that other
# CMakeLists read; nothing is compiled with nvcc unless it is TRUE.
set(KVC_HAVE_CUDA FALSE)
if(NOT KVC_CUDA STREQUAL "OFF")
  if(NOT CMAKE_CUDA_COMPILER AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
  endif()
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    # One architecture by default (H100/H200): every extra one multiplies nvcc's time, and CI
    # compiles this on two cores. -DCMAKE_CUDA_ARCHITECTURES="80;90" (or "native") overrides.
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
      set(CMAKE_CUDA_ARCHITECTURES 90)
    endif()
    enable_language(CUDA)
    find_package(CUDAToolkit REQUIRED)
    set(KVC_HAVE_CUDA TRUE)
  elseif(KVC_CUDA STREQUAL "ON")
    message(FATAL_ERROR "KVC_CUDA=ON but no CUDA compiler was found (looked for nvcc)")
  endif()
endif()
message(STATUS "kvcluster: CUDA backend ${KVC_HAVE_CUDA} (KVC_CUDA=${KVC_CUDA}, architectures ${CMAKE_CUDA_ARCHITECTURES})")
