# Compile options shared by every target of the project (attached through hnf_project_options).

# Asserts stay on in release builds: strip NDEBUG from the release flags.
foreach(cfg RELEASE RELWITHDEBINFO MINSIZEREL)
  string(REPLACE "-DNDEBUG" "" CMAKE_CXX_FLAGS_${cfg} "${CMAKE_CXX_FLAGS_${cfg}}")
  string(REPLACE "-DNDEBUG" "" CMAKE_CUDA_FLAGS_${cfg} "${CMAKE_CUDA_FLAGS_${cfg}}")
endforeach()

# Floating point pinned (proofs/THEORY.md section 1): every operation rounds once, as written.
# GCC and clang contract a*b+c into one FMA by default wherever the target has FMA (in
# target("fma") functions on x86-64, everywhere on AArch64); the error analyses count one
# rounding per operation, and the reference computations must round as the code reads. Global
# (not only hnf_project_options) so that every object of the project is compiled this way:
# libraries, tools, tests, benchmarks, fuzz targets. tests/soundness/check_fp_flags.cmake checks every
# compile command; the CUDA flags are set in runtime/cuda/CMakeLists.txt.
add_compile_options($<$<COMPILE_LANGUAGE:CXX>:-ffp-contract=off> $<$<COMPILE_LANGUAGE:CXX>:-fno-fast-math>)

add_library(hnf_project_options INTERFACE)
target_compile_options(hnf_project_options INTERFACE
  $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wno-sign-conversion>)
# GCC 12 reports false -Wrestrict positives inside libstdc++'s std::string operator+ at -O2/-O3
# (GCC bug 105329); the warning says nothing about our code there.
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
  target_compile_options(hnf_project_options INTERFACE $<$<COMPILE_LANGUAGE:CXX>:-Wno-restrict>)
endif()
if(HNF_WERROR)
  target_compile_options(hnf_project_options INTERFACE $<$<COMPILE_LANGUAGE:CXX>:-Werror>)
endif()

if(HNF_SANITIZE)
  string(REPLACE "," ";" _hnf_sanitizers "${HNF_SANITIZE}")
  list(JOIN _hnf_sanitizers "," _hnf_sanitize_list)
  message(STATUS "HNF: sanitizers ${_hnf_sanitize_list}")
  # Applied globally so that every object, test and tool is instrumented the same way.
  add_compile_options($<$<COMPILE_LANGUAGE:CXX>:-fsanitize=${_hnf_sanitize_list}>
                      $<$<COMPILE_LANGUAGE:CXX>:-fno-sanitize-recover=all>
                      $<$<COMPILE_LANGUAGE:CXX>:-fno-omit-frame-pointer>)
  add_link_options(-fsanitize=${_hnf_sanitize_list})
endif()
