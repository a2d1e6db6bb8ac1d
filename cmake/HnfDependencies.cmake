# Third-party libraries, all from Debian 12 packages (scripts/setup.sh installs them).
find_package(PkgConfig REQUIRED)
find_package(nlohmann_json 3.10 REQUIRED)
find_package(fmt REQUIRED)
find_package(CLI11 REQUIRED)
find_package(OpenSSL REQUIRED COMPONENTS Crypto)  # SHA-256 of models, texts, traces
pkg_check_modules(MPFR REQUIRED IMPORTED_TARGET mpfr)
pkg_check_modules(GMP REQUIRED IMPORTED_TARGET gmp)
# libpng: the browser test's screenshot check (tests/cli/png_stats.cpp).
pkg_check_modules(PNG REQUIRED IMPORTED_TARGET libpng)
# Attestations (proofs/attestation.h): Ed25519 signatures. Debian's libsodium ships no CMake config.
pkg_check_modules(SODIUM REQUIRED IMPORTED_TARGET libsodium)
# The certificate checker's exact rationals (mpq_class).
pkg_check_modules(GMPXX REQUIRED IMPORTED_TARGET gmpxx)
# Boost.Interval (analysis/ interval engine): header-only, Boost::headers.
find_package(Boost REQUIRED)
# OpenMP: the analysis runs its per-query loops on every core.
find_package(OpenMP REQUIRED)
# runtime/: the model runner's matrix products (cblas.h lives in OpenBLAS's include folder,
# which pkg-config names) and the tokenizer. Debian's sentencepiece.pc also links the trainer
# library, which the tokenizer tests use.
pkg_check_modules(OPENBLAS REQUIRED IMPORTED_TARGET openblas)
pkg_check_modules(SENTENCEPIECE REQUIRED IMPORTED_TARGET sentencepiece)
if(HNF_ENABLE_Z3)
  # Debian's Z3 ships no CMake config.
  pkg_check_modules(Z3 REQUIRED IMPORTED_TARGET z3)
endif()
if(HNF_ENABLE_TRAIN)
  # LibTorch (Debian's libtorch-dev): only train/ and its tests link it. Found at the top level
  # because its imported targets are directory-scoped.
  find_package(Torch REQUIRED)
endif()
if(HNF_BUILD_TESTS)
  find_package(doctest REQUIRED)
endif()

# CUDA: AUTO enables it where a CUDA compiler is found. enable_language(CUDA) happens in
# runtime/cuda/CMakeLists.txt only.
set(HNF_HAVE_CUDA OFF)
if(HNF_ENABLE_CUDA STREQUAL "AUTO" OR HNF_ENABLE_CUDA)
  if(NOT CMAKE_CUDA_COMPILER AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
  endif()
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    set(HNF_HAVE_CUDA ON)
  elseif(NOT HNF_ENABLE_CUDA STREQUAL "AUTO")
    message(FATAL_ERROR "HNF_ENABLE_CUDA=ON but no CUDA compiler was found")
  endif()
endif()
message(STATUS "HNF: Z3 ${HNF_ENABLE_Z3}, CUDA ${HNF_HAVE_CUDA}")
