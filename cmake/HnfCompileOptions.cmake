# Compile options shared by every target of the project (attached through hnf_project_options).

# Asserts stay on in release builds: strip NDEBUG from the release flags.
foreach(cfg RELEASE RELWITHDEBINFO MINSIZEREL)
  string(REPLACE "-DNDEBUG" "" CMAKE_CXX_FLAGS_${cfg} "${CMAKE_CXX_FLAGS_${cfg}}")
  string(REPLACE "-DNDEBUG" "" CMAKE_CUDA_FLAGS_${cfg} "${CMAKE_CUDA_FLAGS_${cfg}}")
endforeach()

add_library(hnf_project_options INTERFACE)
target_compile_options(hnf_project_options INTERFACE
  $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wno-sign-conversion>
  # Soundness: no value-changing float optimisations anywhere (interval code relies on it).
  $<$<COMPILE_LANGUAGE:CXX>:-fno-fast-math>)
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
