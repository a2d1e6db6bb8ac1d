// Reader and writer for the safetensors file format, the container of traces and model
// checkpoints. It lives in proofs/ because both analysis/ (traces) and runtime/ (checkpoints)
// need it and proofs/ is the one library below both.
//
// Format: an 8-byte little-endian header length N, N bytes of JSON (one entry per tensor:
// dtype, shape, data_offsets [begin, end) relative to the data section; an optional
// "__metadata__" object of string -> string), then the raw little-endian tensor data.
//
// The reader memory-maps the file and validates every header field before it hands out a
// view, so a 128K-token trace is never copied; pages a caller has finished with can be
// dropped from resident memory with release(). The writer writes to "<out>.partial" and
// renames on finish(), so a failed or abandoned write leaves nothing at the output path.
//
// Both register with live_files.h: a mapping, so that a file truncated by another process while
// it is read (SIGBUS) is reported as bad input naming it; a partial file, so that a handler that
// ends the process without unwinding still removes it.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "hnf/proofs/live_files.h"

namespace hnf::proofs {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; big-endian hosts are not supported");

enum class Dtype : std::uint8_t { kF32, kF16, kBF16, kI8, kU8, kI32, kI64 };

[[nodiscard]] std::size_t dtype_size(Dtype dtype) noexcept;      // bytes per element
[[nodiscard]] std::string_view dtype_name(Dtype dtype) noexcept;  // "F32", "BF16", ...
[[nodiscard]] std::optional<Dtype> parse_dtype(std::string_view name) noexcept;
[[nodiscard]] bool is_floating(Dtype dtype) noexcept;

// Element i of a floating tensor's raw little-endian bytes as a float: exact for F32, F16 and
// BF16 (data need not be aligned). Other dtypes: 0 (callers check is_floating first).
[[nodiscard]] float load_float(Dtype dtype, const std::byte* data, std::uint64_t i) noexcept;

// Test hook, not for users: the first time the process asks a SafetensorsFile whose file name
// (last path component) is this variable's value for a tensor's bytes, it stops itself
// (SIGSTOP), once per process: a test can then truncate the mapped file or deliver a signal at
// that known point, in the middle of the work, and send SIGCONT (tests/cli/faults_test.sh).
inline constexpr const char* kPauseAtFirstReadEnv = "HNF_TEST_PAUSE_AT_FIRST_READ";

// Largest header the reader accepts (the limit of the reference implementation).
inline constexpr std::uint64_t kMaxHeaderBytes = 100'000'000;
// Largest byte size (and element count) of one tensor: 2^63 - 1, so that every size and offset
// also fits an off_t and a signed 64-bit index.
inline constexpr std::uint64_t kMaxTensorBytes = std::uint64_t{INT64_MAX};

// Bytes of a tensor of `shape` with `element_bytes`-byte elements, or nullopt when a dimension is
// negative or the product of the non-zero dimensions times element_bytes exceeds
// kMaxTensorBytes (checked before every multiplication, so nothing wraps). Zero dimensions are
// left out of that product on purpose: a [0, 2^62, 2^62] tensor has no bytes, but a reader that
// multiplies two of its dimensions would still overflow, so it is refused too.
[[nodiscard]] std::optional<std::uint64_t> checked_tensor_bytes(std::span<const std::int64_t> shape,
                                                                std::uint64_t element_bytes) noexcept;

using Metadata = std::map<std::string, std::string, std::less<>>;

struct TensorInfo {
  std::string name;
  Dtype dtype = Dtype::kF32;
  std::vector<std::int64_t> shape;
  std::uint64_t begin = 0;  // byte offset in the data section, inclusive
  std::uint64_t end = 0;    // byte offset in the data section, exclusive

  [[nodiscard]] std::uint64_t numel() const noexcept;
  [[nodiscard]] std::uint64_t nbytes() const noexcept { return end - begin; }
};

// "[4, 128, 64]"
[[nodiscard]] std::string format_shape(std::span<const std::int64_t> shape);

class SafetensorsFile {
 public:
  // Maps and validates `path`. Throws Error(kBadInput) "<path>: <problem>" on any defect:
  // missing or empty file, header length beyond the file or over kMaxHeaderBytes, header
  // that is not a JSON object, unknown dtype, shape/offset size mismatch, offsets out of
  // range or overlapping, malformed metadata.
  static SafetensorsFile open(const std::filesystem::path& path);

  SafetensorsFile(SafetensorsFile&& other) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&& other) noexcept;
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;
  ~SafetensorsFile();

  [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }
  [[nodiscard]] std::uint64_t file_size() const noexcept { return file_size_; }
  [[nodiscard]] const Metadata& metadata() const noexcept { return metadata_; }
  // Sorted by begin offset (file order).
  [[nodiscard]] const std::vector<TensorInfo>& tensors() const noexcept { return tensors_; }
  // nullptr when absent.
  [[nodiscard]] const TensorInfo* find(std::string_view name) const noexcept;

  // The tensor's raw little-endian bytes, a view into the mapping (valid while *this lives).
  [[nodiscard]] std::span<const std::byte> bytes(const TensorInfo& tensor) const noexcept;
  // Hint that the pages of [offset, offset + length) of the tensor's bytes will not be read
  // again soon: they are dropped from this process's resident memory (re-read on access).
  void release(const TensorInfo& tensor, std::uint64_t offset, std::uint64_t length) const noexcept;

 private:
  SafetensorsFile() = default;
  void unmap() noexcept;

  std::filesystem::path path_;
  std::uint64_t file_size_ = 0;
  std::uint64_t data_start_ = 0;  // 8 + header length
  const std::byte* map_ = nullptr;
  LiveFileRegistration mapping_registration_;  // of [map_, map_ + file_size_)
  Metadata metadata_;
  std::vector<TensorInfo> tensors_;
};

struct TensorSpec {
  std::string name;
  Dtype dtype = Dtype::kF32;
  std::vector<std::int64_t> shape;
};

class SafetensorsWriter {
 public:
  // Lays out the tensors in the given order, writes the header to "<out>.partial".
  // Throws Error(kBadInput) naming `out` when it cannot be created or a spec is invalid
  // (empty or duplicate name, negative dimension, reserved name "__metadata__").
  SafetensorsWriter(std::filesystem::path out, std::vector<TensorSpec> specs, Metadata metadata);
  SafetensorsWriter(const SafetensorsWriter&) = delete;
  SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;
  // Removes "<out>.partial" unless finish() succeeded.
  ~SafetensorsWriter();

  // Appends the next bytes of tensor `name` (chunks are written in order; any chunking).
  // Throws Error(kInternal) when more bytes than the tensor holds are given, Error(kWriteFailed)
  // naming `out` when the write fails (full disk, file size limit, I/O error); so do the
  // constructor (sizing the file) and finish().
  void append(std::string_view name, std::span<const std::byte> data);
  // Checks every tensor is complete, flushes, and renames to `out`.
  void finish();

  [[nodiscard]] const std::filesystem::path& out() const noexcept { return out_; }

 private:
  struct Slot {
    TensorInfo info;
    std::uint64_t written = 0;
  };
  Slot& slot(std::string_view name);
  void write_at(std::uint64_t offset, std::span<const std::byte> data);

  std::filesystem::path out_;
  std::filesystem::path partial_;
  LiveFileRegistration partial_registration_;  // of partial_, until it is renamed or removed
  int fd_ = -1;
  std::uint64_t data_start_ = 0;
  std::vector<Slot> slots_;
  bool finished_ = false;
};

// Header JSON of a file with these tensors and metadata, with offsets assigned in order, padded
// with spaces to a multiple of 8 bytes. Exposed for tests that craft malformed files.
[[nodiscard]] std::string build_header(std::span<const TensorInfo> tensors, const Metadata& metadata);

}  // namespace hnf::proofs
