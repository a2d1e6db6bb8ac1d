# Regenerates examples/tiny-trace.safetensors and requires identical bytes.
execute_process(COMMAND ${HNF_VERIFY} synth-trace --out ${OUT} --layers 2 --heads 4 --kv-heads 2
                        --tokens 32 --head-dim 64 --query-stride 4 --dtype F16 --seed 1
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "synth-trace failed with exit ${rc}")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} -E compare_files ${OUT} ${EXAMPLE} RESULT_VARIABLE differ)
if(NOT differ EQUAL 0)
  message(FATAL_ERROR "${EXAMPLE} differs from what synth-trace writes now; regenerate it (examples/README.md)")
endif()
