// What every fuzz target (tests/fuzz/*.cpp) checks, whichever way it is built: with libFuzzer
// (-DHNF_FUZZ=ON, clang) or as a plain replay driver over tests/bugs/ and the seed corpora
// (replay_main.cpp, any compiler).
//
// The contract of a reader on hostile bytes (issue 17): it either accepts them or throws
// proofs::Error of kind kBadInput whose message is one line naming the file. Anything else is a
// finding and aborts, so libFuzzer records the input as a crash and the replay test fails:
// a signal (ASan, UBSan, a wild read), an Error of another kind (kInternal: an HNF_ASSERT that
// hostile input can reach, the CLI would exit 4, not 3), any other exception (exit 4 "internal
// error"), or a message that is not one line starting with the file's name.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <string>
#include <string_view>

#include "hnf/proofs/error.h"

namespace hnf::fuzz {

[[noreturn]] inline void finding(std::string_view what, std::string_view message) {
  std::fprintf(stderr, "hnf fuzz finding: %.*s: %.*s\n", static_cast<int>(what.size()), what.data(),
               static_cast<int>(message.size()), message.data());
  std::abort();
}

// Runs `read` on one input; returns true when it accepted the input, false when it rejected it
// as bad input (the message checked against `file`); aborts on anything else.
template <class Read>
bool accepts(std::string_view file, Read&& read) {
  try {
    read();
    return true;
  } catch (const proofs::Error& e) {
    const std::string_view message = e.what();
    if (e.kind() != proofs::ErrorKind::kBadInput) finding("an error other than bad input (exit 3)", message);
    if (!message.starts_with(file)) finding("bad-input message does not name the file", message);
    if (message.find('\n') != std::string_view::npos) finding("bad-input message is not one line", message);
    return false;
  } catch (const std::exception& e) {
    finding("exception other than proofs::Error (exit 4)", e.what());
  }
}

// A file whose content is replaced by each input, for readers that take a path (they mmap or
// stream it). Made once per process under $TMPDIR (or /tmp) and removed at exit.
class ScratchFile {
 public:
  explicit ScratchFile(std::string_view name) {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/hnf-fuzz-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) finding("cannot make a scratch directory", pattern);
    dir_ = pattern;
    path_ = dir_ / name;
  }
  ScratchFile(const ScratchFile&) = delete;
  ScratchFile& operator=(const ScratchFile&) = delete;
  ~ScratchFile() {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  [[nodiscard]] const std::filesystem::path& dir() const noexcept { return dir_; }
  [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }

  // Replaces the file's content with `size` bytes at `data`; returns the path.
  const std::filesystem::path& write(const std::uint8_t* data, std::size_t size) const { return write_at(path_, data, size); }

  // Writes `size` bytes to `path` (truncating it), aborting when the write fails: a full scratch
  // disk must not pass for a rejected input.
  static const std::filesystem::path& write_at(const std::filesystem::path& path, const std::uint8_t* data, std::size_t size) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) finding("cannot write the scratch file", path.string());
    std::size_t done = 0;
    while (done < size) {
      const ssize_t n = ::write(fd, data + done, size - done);
      if (n <= 0) {
        ::close(fd);
        finding("cannot write the scratch file", path.string());
      }
      done += static_cast<std::size_t>(n);
    }
    ::close(fd);
    return path;
  }

 private:
  std::filesystem::path dir_;
  std::filesystem::path path_;
};

inline std::string_view as_text(const std::uint8_t* data, std::size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

}  // namespace hnf::fuzz
