# ctest "bench: runtime benchmark smoke run": runs hnf-bench-runtime --quick without
# certificates and checks that the report was written with every section.
# Variables: BENCH (the binary), MODEL (the reference model directory), OUT (the report).
file(REMOVE "${OUT}")
execute_process(COMMAND "${BENCH}" --quick --model "${MODEL}" --out "${OUT}" RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "hnf-bench-runtime --quick exited with ${rc}")
endif()
if(NOT EXISTS "${OUT}")
  message(FATAL_ERROR "hnf-bench-runtime --quick did not write ${OUT}")
endif()
file(READ "${OUT}" report)
foreach(section "## Machine" "## Memory bandwidth" "## Arithmetic peak (fp32 FMA)" "FMA roof" "## Reference model shape" "## Llama-3-8B-like layer"
                "## Append (quantize) throughput" "## GPU" "## Targets" "certified mixed-map rows are omitted"
                "LibTorch fp32 (dense)")
  string(FIND "${report}" "${section}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "${OUT} lacks \"${section}\"")
  endif()
endforeach()
if(EXISTS "${OUT}.partial")
  message(FATAL_ERROR "${OUT}.partial was left behind")
endif()
