// Skipping a doctest case so that ctest reports it as skipped, not passed.
//
// doctest has no skip status: a case that returns early counts as passed, and a case marked
// `* doctest::skip()` is not even listed, so ctest never sees it. HNF_SKIP(reason) prints the
// reason, records the skip and returns from the test case; tests/doctest_main.cpp then exits
// 77, which every doctest entry registered by hnf_add_test (tests/CMakeLists.txt) declares as
// its SKIP_RETURN_CODE. ctest runs one case per process, so 77 names exactly the skipped case;
// a run of the whole binary exits 77 when nothing failed and at least one case was skipped.
// Use it in the body of a TEST_CASE, before any SUBCASE, for a condition the set-up cannot
// provide (a CPU feature, a sanitizer build); a tool the set-up installs is a hard requirement.
#pragma once

namespace hnf::testing {
void mark_skipped(const char* reason);
}  // namespace hnf::testing

#define HNF_SKIP(reason)                    \
  do {                                      \
    ::hnf::testing::mark_skipped(reason);   \
    return;                                 \
  } while (false)
