// The doctest main of every unit-test binary: doctest's own, plus the skip status of skip.h
// (exit 77 when nothing failed and a case called HNF_SKIP).
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>

#include "skip.h"

namespace {
int skipped_cases = 0;
constexpr int kSkipExitCode = 77;  // ctest's SKIP_RETURN_CODE of every doctest entry
}  // namespace

void hnf::testing::mark_skipped(const char* reason) {
  ++skipped_cases;
  std::printf("SKIPPED: %s\n", reason);
  std::fflush(stdout);
}

int main(int argc, char** argv) {
  doctest::Context context(argc, argv);
  const int failed = context.run();
  if (context.shouldExit() || failed != 0) return failed;
  return skipped_cases > 0 ? kSkipExitCode : 0;
}
