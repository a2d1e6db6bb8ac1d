// Runs the hnf-verify binary under test (HNF_VERIFY_BIN, set by tests/CMakeLists.txt) as a
// user would, capturing exit code, stdout and stderr.
#pragma once

#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "test_files.h"

namespace hnf::testing {

struct CliRun {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// `environment`: shell assignments put before the command ("NAME='value' "), e.g. a test hook.
inline CliRun hnf_verify(const std::string& args, const std::string& environment = "") {
  TempDir dir;
  const std::string command = environment + "'" + HNF_VERIFY_BIN + "' " + args + " >'" + (dir / "out").string() +
                              "' 2>'" + (dir / "err").string() + "' </dev/null";
  const int status = std::system(command.c_str());
  return {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), read_file(dir / "out"),
          read_file(dir / "err")};
}

// A path quoted for the shell command line.
inline std::string quote(const std::filesystem::path& p) { return "'" + p.string() + "'"; }

}  // namespace hnf::testing
