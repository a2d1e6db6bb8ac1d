// Whole-file reads (read_file.h) and all-or-nothing writes (write_file.h) under faults: a file
// that is not what fstat said, a write the file size limit stops, a rename that is refused.
#include <doctest/doctest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <functional>

#include "hnf/proofs/error.h"
#include "hnf/proofs/read_file.h"
#include "hnf/proofs/write_file.h"
#include "test_files.h"

using namespace hnf::proofs;
using hnf::testing::contains;
using hnf::testing::read_file;
using hnf::testing::TempDir;
using hnf::testing::write_file;

namespace {

// The error `action` throws (it must throw a proofs::Error).
Error error_of(const std::function<void()>& action) {
  try {
    action();
  } catch (const Error& e) {
    return e;
  }
  FAIL("no proofs::Error was thrown");
  return Error(ErrorKind::kInternal, "unreachable");
}

// Runs `action` in a child process whose files may not grow beyond `limit` bytes (SIGXFSZ
// ignored, as hnf-verify does, so write() fails with EFBIG). Returns the exit code of the
// error it threw (0 when it threw nothing, 99 for anything but a proofs::Error).
int exit_code_under_file_size_limit(rlim_t limit, const std::function<void()>& action) {
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    std::signal(SIGXFSZ, SIG_IGN);
    const rlimit fsize{limit, limit};
    if (::setrlimit(RLIMIT_FSIZE, &fsize) != 0) ::_exit(98);
    try {
      action();
    } catch (const Error& e) {
      ::_exit(static_cast<int>(e.exit_code()));
    } catch (...) {
      ::_exit(99);
    }
    ::_exit(0);
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  return WEXITSTATUS(status);
}

std::size_t entries(const std::filesystem::path& dir) {
  return static_cast<std::size_t>(std::distance(std::filesystem::directory_iterator(dir), {}));
}

}  // namespace

TEST_CASE("read_whole_file returns exactly the file's bytes") {
  TempDir dir;
  const std::string bytes("a\0b\nc", 5);
  write_file(dir / "f", bytes);
  CHECK(read_whole_file(dir / "f") == bytes);
  write_file(dir / "empty", "");
  CHECK(read_whole_file(dir / "empty").empty());
}

TEST_CASE("read_whole_file refuses what it cannot read as one snapshot, naming the file") {
  TempDir dir;
  write_file(dir / "f", "0123456789");
  const Error over = error_of([&] { (void)read_whole_file(dir / "f", 9); });
  CHECK(over.kind() == ErrorKind::kBadInput);
  CHECK(std::string(over.what()) == (dir / "f").string() + ": is over the limit of 9 bytes");
  CHECK(read_whole_file(dir / "f", 10) == "0123456789");

  const Error directory = error_of([&] { (void)read_whole_file(dir.path()); });
  CHECK(std::string(directory.what()) == dir.path().string() + ": is a directory");
  const Error missing = error_of([&] { (void)read_whole_file(dir / "missing"); });
  CHECK(contains(missing.what(), "missing: cannot open: No such file or directory"));

  // fstat says 0 bytes and read() finds more: what a file being written looks like.
  const Error grew = error_of([] { (void)read_whole_file("/proc/self/status"); });
  CHECK(grew.kind() == ErrorKind::kBadInput);
  CHECK(std::string(grew.what()) == "/proc/self/status: grew while being read");
}

TEST_CASE("a write the file size limit stops is a write failure and leaves every destination as it was") {
  TempDir dir;
  write_file(dir / "old.md", "the previous report\n");
  const std::string big(4096, 'x');
  const int code = exit_code_under_file_size_limit(1024, [&] {
    write_texts_atomically({{(dir / "small.txt").string(), "fits"}, {(dir / "old.md").string(), big}});
  });
  CHECK(code == static_cast<int>(ExitCode::kWriteFailed));
  CHECK(code == 5);
  CHECK(read_file(dir / "old.md") == "the previous report\n");  // untouched, not half-written
  CHECK(!std::filesystem::exists(dir / "small.txt"));           // written, never moved into place
  CHECK(entries(dir.path()) == 1);                               // no .partial file left

  // The same write without the limit succeeds (the limit, not the write, made it fail).
  CHECK(exit_code_under_file_size_limit(RLIM_INFINITY, [&] {
          write_texts_atomically({{(dir / "small.txt").string(), "fits"}, {(dir / "old.md").string(), big}});
        }) == 0);
  CHECK(read_file(dir / "old.md") == big);
  CHECK(read_file(dir / "small.txt") == "fits");
  CHECK(entries(dir.path()) == 2);
}

TEST_CASE("a refused rename removes the files already moved and every partial file") {
  TempDir dir;
  std::filesystem::create_directories(dir / "taken" / "inside");  // a non-empty folder: rename refuses
  const Error e = error_of([&] {
    write_texts_atomically({{(dir / "first.txt").string(), "1"}, {(dir / "taken").string(), "2"}});
  });
  CHECK(e.kind() == ErrorKind::kWriteFailed);
  CHECK(contains(e.what(), (dir / "taken").string() + ": cannot move the written file into place"));
  CHECK(!std::filesystem::exists(dir / "first.txt"));
  CHECK(!std::filesystem::exists(dir / "first.txt.partial"));
  CHECK(!std::filesystem::exists(dir / "taken.partial"));
  CHECK(std::filesystem::is_directory(dir / "taken" / "inside"));

  const Error missing_folder = error_of([&] { write_text_atomically((dir / "no-such" / "f").string(), "x"); });
  CHECK(missing_folder.kind() == ErrorKind::kBadInput);
  CHECK(contains(missing_folder.what(), "no-such/f: cannot open for writing: No such file or directory"));
}
