#include <doctest/doctest.h>

#include "hnf/proofs/error.h"

using namespace hnf::proofs;

TEST_CASE("bad_input names the file and the problem on one line") {
  const Error e = bad_input("dir/trace.safetensors", "file is empty");
  CHECK(std::string(e.what()) == "dir/trace.safetensors: file is empty");
  CHECK(e.kind() == ErrorKind::kBadInput);
  CHECK(e.exit_code() == ExitCode::kBadInput);
  CHECK(static_cast<int>(e.exit_code()) == 3);
}

TEST_CASE("HNF_ASSERT stays on and reports an internal error with its location") {
  int evaluated = 0;
  auto fails = [&] { HNF_ASSERT(++evaluated == 0, "counter must be zero"); };
  try {
    fails();
    FAIL("HNF_ASSERT did not throw");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::kInternal);
    CHECK(static_cast<int>(e.exit_code()) == 4);
    const std::string text = e.what();
    CHECK(text.find("++evaluated == 0") != std::string::npos);
    CHECK(text.find("error_test.cpp") != std::string::npos);
    CHECK(text.find("counter must be zero") != std::string::npos);
  }
  CHECK(evaluated == 1);
  CHECK_NOTHROW(HNF_ASSERT(evaluated == 1, ""));
}

TEST_CASE("exit codes are the documented ones") {
  CHECK(static_cast<int>(ExitCode::kSuccess) == 0);
  CHECK(static_cast<int>(ExitCode::kRefuted) == 1);
  CHECK(static_cast<int>(ExitCode::kUnknown) == 2);
  CHECK(static_cast<int>(ExitCode::kBadInput) == 3);
  CHECK(static_cast<int>(ExitCode::kInternal) == 4);
  CHECK(static_cast<int>(ExitCode::kWriteFailed) == 5);
  CHECK(static_cast<int>(ExitCode::kInterrupted) == 130);
  CHECK(static_cast<int>(ExitCode::kTerminated) == 143);
}

TEST_CASE("write_failed names the output and maps to exit 5") {
  const Error e = write_failed("out/cert.json", "could not write: No space left on device");
  CHECK(std::string(e.what()) == "out/cert.json: could not write: No space left on device");
  CHECK(e.kind() == ErrorKind::kWriteFailed);
  CHECK(e.exit_code() == ExitCode::kWriteFailed);
}
