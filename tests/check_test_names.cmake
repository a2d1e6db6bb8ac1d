# A doctest case whose name holds a semicolon is registered by doctest_discover_tests under a
# name cut at the semicolon; ctest then runs a filter that matches no case, and doctest exits 0:
# the test "passes" without running (eight cases did, until this check). Fails on any such name.
# Usage: cmake -DSOURCES=<tests folder> -P check_test_names.cmake
file(GLOB_RECURSE sources "${SOURCES}/*.cpp")
set(bad "")
foreach(source IN LISTS sources)
  file(STRINGS "${source}" lines REGEX "TEST_CASE\\(\"[^\"]*;")
  foreach(line IN LISTS lines)
    string(APPEND bad "\n  ${source}: ${line}")
  endforeach()
endforeach()
list(LENGTH sources count)
if(count EQUAL 0)
  message(FATAL_ERROR "no test sources under ${SOURCES}")
endif()
if(NOT bad STREQUAL "")
  message(FATAL_ERROR "test case names with a semicolon (ctest would run none of them):${bad}")
endif()
message(STATUS "${count} test sources, no test case name with a semicolon")
