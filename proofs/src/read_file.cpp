#include "hnf/proofs/read_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "hnf/proofs/error.h"

namespace hnf::proofs {
namespace {

std::string errno_text() { return std::strerror(errno); }

// Closes the descriptor on every path out of read_whole_file.
class Descriptor {
 public:
  explicit Descriptor(int fd) noexcept : fd_(fd) {}
  Descriptor(const Descriptor&) = delete;
  Descriptor& operator=(const Descriptor&) = delete;
  ~Descriptor() {
    if (fd_ >= 0) ::close(fd_);
  }
  [[nodiscard]] int get() const noexcept { return fd_; }

 private:
  int fd_;
};

bool same_time(const timespec& a, const timespec& b) noexcept { return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec; }

// What a writer at work changes: the size, the modification time, the inode change time.
bool unchanged(const struct stat& before, const struct stat& after) noexcept {
  return before.st_size == after.st_size && same_time(before.st_mtim, after.st_mtim) &&
         same_time(before.st_ctim, after.st_ctim);
}

// Reads up to `size` bytes into `out`; returns how many came before end of file.
std::size_t read_up_to(int fd, char* out, std::size_t size, const std::string& name) {
  std::size_t done = 0;
  while (done < size) {
    const ssize_t n = ::read(fd, out + done, size - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw bad_input(name, "cannot read: " + errno_text());
    if (n == 0) break;
    done += static_cast<std::size_t>(n);
  }
  return done;
}

std::string over_limit(std::uint64_t max_bytes) { return "is over the limit of " + std::to_string(max_bytes) + " bytes"; }

// A pipe or terminal has no size to compare: read to its end, within the limit.
std::string read_stream(int fd, const std::string& name, std::uint64_t max_bytes) {
  std::string bytes;
  char chunk[65536];
  for (;;) {
    const std::size_t got = read_up_to(fd, chunk, sizeof chunk, name);
    if (bytes.size() + got > max_bytes) throw bad_input(name, over_limit(max_bytes));
    bytes.append(chunk, got);
    if (got < sizeof chunk) return bytes;
  }
}

}  // namespace

std::string read_whole_file(const std::filesystem::path& path, std::uint64_t max_bytes) {
  const std::string name = path.string();
  const Descriptor fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) throw bad_input(name, "cannot open: " + errno_text());
  struct stat before {};
  if (::fstat(fd.get(), &before) != 0) throw bad_input(name, "cannot stat: " + errno_text());
  if (S_ISDIR(before.st_mode)) throw bad_input(name, "is a directory");
  if (!S_ISREG(before.st_mode)) return read_stream(fd.get(), name, max_bytes);
  const auto size = static_cast<std::uint64_t>(before.st_size);
  if (before.st_size < 0 || size > max_bytes) throw bad_input(name, over_limit(max_bytes));
  std::string bytes(static_cast<std::size_t>(size), '\0');
  const std::size_t got = read_up_to(fd.get(), bytes.data(), bytes.size(), name);
  if (got != bytes.size()) {
    throw bad_input(name, "was truncated while being read (" + std::to_string(got) + " of " + std::to_string(size) +
                              " bytes)");
  }
  char extra = 0;
  if (read_up_to(fd.get(), &extra, 1, name) != 0) throw bad_input(name, "grew while being read");
  struct stat after {};
  if (::fstat(fd.get(), &after) != 0) throw bad_input(name, "cannot stat: " + errno_text());
  if (!unchanged(before, after)) throw bad_input(name, "changed while being read");
  return bytes;
}

}  // namespace hnf::proofs
