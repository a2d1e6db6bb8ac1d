#include "hnf/proofs/write_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string_view>
#include <system_error>
#include <utility>

#include "hnf/proofs/error.h"
#include "hnf/proofs/live_files.h"

namespace hnf::proofs {
namespace {

std::string errno_text(int error) { return std::strerror(error); }

// One output on its way to `path`: written to "<path>.partial", which the destructor removes
// unless commit() moved it into place. Every failure after the open is a write failure (exit 5)
// naming `path`; the open itself failing means the path given cannot be created (bad input).
// Registered as a partial output (live_files.h) while it exists, for a handler that ends the
// process without unwinding.
class PartialFile {
 public:
  explicit PartialFile(std::string path)
      : path_(std::move(path)), partial_(path_ + ".partial"), registration_(register_partial_output(partial_)) {
    fd_ = ::open(partial_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) throw bad_input(path_, "cannot open for writing: " + errno_text(errno));
  }
  PartialFile(PartialFile&& other) noexcept
      : path_(std::move(other.path_)), partial_(std::move(other.partial_)),
        registration_(std::move(other.registration_)), fd_(std::exchange(other.fd_, -1)),
        committed_(std::exchange(other.committed_, true)) {}
  PartialFile(const PartialFile&) = delete;
  PartialFile& operator=(const PartialFile&) = delete;
  PartialFile& operator=(PartialFile&&) = delete;
  ~PartialFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(partial_.c_str());
    registration_.reset();
  }

  // Writes all of `text`, then flushes it to the device: a full disk or a file size limit
  // (EFBIG: the tool ignores SIGXFSZ) surfaces here or in close, never after the rename.
  void write_all(std::string_view text) {
    append(text);
    finish();
  }

  void append(std::string_view text) {
    while (!text.empty()) {
      const ssize_t n = ::write(fd_, text.data(), text.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) throw write_failed(path_, "could not write: " + errno_text(n < 0 ? errno : EIO));
      text.remove_prefix(static_cast<std::size_t>(n));
    }
  }

  void finish() {
    if (::fsync(fd_) != 0) throw write_failed(path_, "could not flush: " + errno_text(errno));
    if (::close(std::exchange(fd_, -1)) != 0) throw write_failed(path_, "could not close: " + errno_text(errno));
  }

  void commit() {
    if (::rename(partial_.c_str(), path_.c_str()) != 0)
      throw write_failed(path_, "cannot move the written file into place: " + errno_text(errno));
    committed_ = true;
    registration_.reset();
  }

  [[nodiscard]] const std::string& path() const noexcept { return path_; }

 private:
  std::string path_;
  std::string partial_;
  LiveFileRegistration registration_;
  int fd_ = -1;
  bool committed_ = false;
};

}  // namespace

void write_text_atomically(const std::string& path, const std::string& text) {
  write_texts_atomically({{path, text}});
}

void write_texts_atomically(const std::vector<std::pair<std::string, std::string>>& files) {
  // Every file is complete on disk before the first rename, so a failed write leaves the
  // destinations as they were.
  std::vector<PartialFile> partials;
  partials.reserve(files.size());
  for (const auto& [path, text] : files) {
    partials.emplace_back(path);
    partials.back().write_all(text);
  }
  std::size_t moved = 0;
  try {
    for (auto& p : partials) {
      p.commit();
      ++moved;
    }
  } catch (...) {
    // A rename refused midway (rare: a destination turned into a directory, say): the files
    // already moved go too, so the outputs are all there or none is.
    std::error_code ec;
    for (std::size_t i = 0; i < moved; ++i) std::filesystem::remove(partials[i].path(), ec);
    throw;
  }
}

void write_streamed_atomically(const std::string& path, const std::function<void(const TextSink&)>& produce) {
  PartialFile partial(path);
  produce([&](std::string_view piece) { partial.append(piece); });
  partial.finish();
  partial.commit();
}

void ensure_directory(const std::string& path, const std::string& option) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec || !std::filesystem::is_directory(path)) {
    throw bad_input(option, "cannot create the directory " + path + (ec ? ": " + ec.message() : ""));
  }
}

}  // namespace hnf::proofs
