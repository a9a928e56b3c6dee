# Every external dependency of dinv, found once here. Each failure says what to
# install (scripts/bootstrap.sh installs all of it on Debian 12).

# --- Python of the virtual environment (LibTorch and the parity tests) -------
if(NOT DINV_PYTHON)
  find_program(DINV_PYTHON NAMES python3 python REQUIRED)
endif()

# --- LibTorch: from the torch wheel, or CMAKE_PREFIX_PATH on a cluster ---------
if(NOT Torch_DIR AND NOT DEFINED ENV{Torch_DIR})
  execute_process(
    COMMAND ${DINV_PYTHON} -c "import torch.utils; print(torch.utils.cmake_prefix_path)"
    OUTPUT_VARIABLE _torch_prefix OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE _torch_rc ERROR_QUIET)
  if(_torch_rc EQUAL 0)
    list(APPEND CMAKE_PREFIX_PATH ${_torch_prefix})
  endif()
endif()
# No GPU on the build machines: name the architectures instead of detecting them.
if(NOT DEFINED ENV{TORCH_CUDA_ARCH_LIST})
  set(ENV{TORCH_CUDA_ARCH_LIST} "8.0;9.0")
endif()
find_package(Torch QUIET)
if(NOT Torch_FOUND)
  message(FATAL_ERROR "LibTorch not found. Run scripts/bootstrap.sh (installs torch==2.11.0 into "
                      "the project's virtual environment) or pass -DCMAKE_PREFIX_PATH=/path/to/libtorch.")
endif()
# Torch's flags (ABI define etc.) without its blanket include of everything.
set(DINV_TORCH_HAS_CUDA OFF)
if(TARGET torch_cuda OR CUDA_FOUND OR CUDAToolkit_FOUND)
  set(DINV_TORCH_HAS_CUDA ON)
endif()
message(STATUS "dinv: LibTorch ${Torch_VERSION} (CUDA: ${DINV_TORCH_HAS_CUDA})")

# --- MPI ----------------------------------------------------------------------
find_package(MPI REQUIRED COMPONENTS C)

# --- HDF5 with the parallel (MPI-IO) driver -------------------------------------
set(HDF5_PREFER_PARALLEL ON)
find_package(HDF5 REQUIRED COMPONENTS C)
if(NOT HDF5_IS_PARALLEL)
  message(FATAL_ERROR "HDF5 ${HDF5_VERSION} was found at ${HDF5_INCLUDE_DIRS} but it is the serial "
                      "build. dinv writes its store collectively through MPI-IO and needs parallel HDF5: "
                      "install libhdf5-openmpi-dev (Debian) or point HDF5_ROOT at a parallel build.")
endif()
message(STATUS "dinv: parallel HDF5 ${HDF5_VERSION}")

# --- Boost.Program_options ----------------------------------------------------
if(POLICY CMP0167)
  cmake_policy(SET CMP0167 NEW)
endif()
find_package(Boost 1.71 REQUIRED COMPONENTS program_options)

# --- zlib (gzip-compressed data files such as the CLIP merge list) -------------
find_package(ZLIB REQUIRED)

# --- GoogleTest ---------------------------------------------------------------
if(DINV_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()

# --- Image codecs and zlib (dataset readers: PNG, JPEG, MedMNIST .npz) ----------
find_package(ZLIB REQUIRED)
find_package(PNG REQUIRED)
find_package(JPEG REQUIRED)

# --- NCCL: the one the torch wheel uses (nvidia-nccl-cu13), never a second -------
set(DINV_WITH_NCCL OFF)
if(DINV_TORCH_HAS_CUDA)
  execute_process(
    COMMAND ${DINV_PYTHON} -c "import nvidia.nccl, os; print(os.path.dirname(nvidia.nccl.__file__) if nvidia.nccl.__file__ else list(nvidia.nccl.__path__)[0])"
    OUTPUT_VARIABLE _nccl_root OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE _nccl_rc ERROR_QUIET)
  find_path(NCCL_INCLUDE_DIR nccl.h HINTS ${_nccl_root}/include ENV NCCL_ROOT PATH_SUFFIXES include)
  find_library(NCCL_LIBRARY NAMES nccl libnccl.so.2 HINTS ${_nccl_root}/lib ENV NCCL_ROOT PATH_SUFFIXES lib)
  if(NCCL_INCLUDE_DIR AND NCCL_LIBRARY)
    set(DINV_WITH_NCCL ON)
    add_library(dinv_nccl SHARED IMPORTED)
    set_target_properties(dinv_nccl PROPERTIES IMPORTED_LOCATION ${NCCL_LIBRARY}
                          INTERFACE_INCLUDE_DIRECTORIES ${NCCL_INCLUDE_DIR})
    message(STATUS "dinv: NCCL ${NCCL_LIBRARY}")
  else()
    message(WARNING "Torch has CUDA but the nvidia-nccl-cu13 wheel was not found: NCCL backend disabled")
  endif()
endif()
