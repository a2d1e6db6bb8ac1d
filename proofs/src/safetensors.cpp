#include "hnf/proofs/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>
#include <unordered_set>
#include <utility>

#include "hnf/proofs/error.h"
#include "hnf/proofs/float16.h"
#include "hnf/proofs/json_limits.h"

namespace hnf::proofs {
namespace {

using nlohmann::json;

constexpr std::string_view kMetadataKey = "__metadata__";

struct DtypeEntry {
  Dtype dtype;
  std::string_view name;
  std::size_t size;
  bool floating;
};
constexpr DtypeEntry kDtypes[] = {
    {Dtype::kF32, "F32", 4, true}, {Dtype::kF16, "F16", 2, true}, {Dtype::kBF16, "BF16", 2, true},
    {Dtype::kI8, "I8", 1, false},  {Dtype::kU8, "U8", 1, false},  {Dtype::kI32, "I32", 4, false},
    {Dtype::kI64, "I64", 8, false},
};

const DtypeEntry& entry(Dtype dtype) noexcept {
  for (const auto& e : kDtypes)
    if (e.dtype == dtype) return e;
  return kDtypes[0];  // unreachable: every enumerator is in the table
}

std::string supported_dtypes() {
  std::string names;
  for (const auto& e : kDtypes) {
    if (!names.empty()) names += ", ";
    names += e.name;
  }
  return names;
}

std::string errno_text() { return std::strerror(errno); }

// The test hook kPauseAtFirstReadEnv.
void pause_at_first_read(const std::filesystem::path& path) noexcept {
  static const char* const name = std::getenv(kPauseAtFirstReadEnv);
  static std::atomic<bool> paused{false};
  if (name != nullptr && !paused.load(std::memory_order_relaxed) && path.filename().native() == name &&
      !paused.exchange(true))
    ::raise(SIGSTOP);
}

// Element count of `shape` under the limits of checked_tensor_bytes.
std::optional<std::uint64_t> checked_numel(std::span<const std::int64_t> shape) {
  return checked_tensor_bytes(shape, 1);
}

std::string in_quotes(std::string_view s) { return "'" + std::string(s) + "'"; }

std::string offsets_text(const TensorInfo& t) {
  return "[" + std::to_string(t.begin) + ", " + std::to_string(t.end) + "]";
}

class HeaderParser {
 public:
  HeaderParser(std::string_view file, std::uint64_t data_bytes) : file_(file), data_bytes_(data_bytes) {}

  void parse(std::string_view text, Metadata& metadata, std::vector<TensorInfo>& tensors) const {
    const json header = parse_json(text, file_, "header");
    if (!header.is_object()) throw fail("header is not a JSON object");
    for (const auto& [key, value] : header.items()) {
      if (key == kMetadataKey) {
        parse_metadata(value, metadata);
      } else {
        tensors.push_back(parse_tensor(key, value));
      }
    }
    check_layout(tensors);
  }

 private:
  Error fail(std::string_view problem) const { return bad_input(file_, problem); }

  void parse_metadata(const json& value, Metadata& metadata) const {
    if (!value.is_object()) throw fail("header field __metadata__ is not a JSON object");
    for (const auto& [key, item] : value.items()) {
      if (!item.is_string()) throw fail("__metadata__ value of " + in_quotes(key) + " is not a string");
      metadata.emplace(key, item.get<std::string>());
    }
  }

  TensorInfo parse_tensor(const std::string& name, const json& value) const {
    const std::string what = "tensor " + in_quotes(name);
    if (name.empty()) throw fail("a tensor has an empty name");
    if (!value.is_object()) throw fail(what + " is not a JSON object");
    TensorInfo t;
    t.name = name;

    const auto dtype_it = value.find("dtype");
    if (dtype_it == value.end() || !dtype_it->is_string()) throw fail(what + " has no string field 'dtype'");
    const auto dtype = parse_dtype(dtype_it->get<std::string>());
    if (!dtype) {
      throw fail(what + " has unsupported dtype " + in_quotes(dtype_it->get<std::string>()) +
                 " (supported: " + supported_dtypes() + ")");
    }
    t.dtype = *dtype;

    const auto shape_it = value.find("shape");
    if (shape_it == value.end() || !shape_it->is_array()) throw fail(what + " has no array field 'shape'");
    for (const auto& dim : *shape_it) {
      if (!dim.is_number_unsigned()) throw fail(what + " has a shape entry that is not a non-negative integer");
      if (dim.get<std::uint64_t>() > kMaxTensorBytes) {
        throw fail(what + " has a shape entry " + std::to_string(dim.get<std::uint64_t>()) + " above 2^63 - 1");
      }
      t.shape.push_back(dim.get<std::int64_t>());
    }

    const auto offsets_it = value.find("data_offsets");
    if (offsets_it == value.end() || !offsets_it->is_array() || offsets_it->size() != 2 ||
        !(*offsets_it)[0].is_number_unsigned() || !(*offsets_it)[1].is_number_unsigned())
      throw fail(what + " needs 'data_offsets' as two non-negative integers");
    t.begin = (*offsets_it)[0].get<std::uint64_t>();
    t.end = (*offsets_it)[1].get<std::uint64_t>();
    if (t.begin > t.end) throw fail(what + " has data_offsets " + offsets_text(t) + " with begin after end");
    if (t.end > data_bytes_) {
      throw fail(what + " has data_offsets " + offsets_text(t) + " beyond the data section of " +
                 std::to_string(data_bytes_) + " bytes");
    }

    const auto needed = checked_tensor_bytes(t.shape, dtype_size(t.dtype));
    if (!needed) {
      throw fail(what + " of dtype " + std::string(dtype_name(t.dtype)) + " and shape " + format_shape(t.shape) +
                 " needs more than 2^63 - 1 bytes");
    }
    if (*needed != t.nbytes()) {
      throw fail(what + " of dtype " + std::string(dtype_name(t.dtype)) + " and shape " + format_shape(t.shape) +
                 " needs " + std::to_string(*needed) + " bytes but data_offsets " + offsets_text(t) + " span " +
                 std::to_string(t.nbytes()));
    }
    return t;
  }

  void check_layout(std::vector<TensorInfo>& tensors) const {
    std::sort(tensors.begin(), tensors.end(), [](const TensorInfo& a, const TensorInfo& b) {
      return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
    });
    for (std::size_t i = 1; i < tensors.size(); ++i) {
      const TensorInfo& prev = tensors[i - 1];
      const TensorInfo& cur = tensors[i];
      if (cur.begin < prev.end) {
        throw fail("tensors " + in_quotes(prev.name) + " " + offsets_text(prev) + " and " + in_quotes(cur.name) + " " +
                   offsets_text(cur) + " overlap");
      }
    }
  }

  std::string_view file_;
  std::uint64_t data_bytes_;
};

}  // namespace

std::optional<std::uint64_t> checked_tensor_bytes(std::span<const std::int64_t> shape,
                                                  std::uint64_t element_bytes) noexcept {
  std::uint64_t extent = element_bytes;  // element_bytes x the product of the non-zero dimensions
  bool empty = false;
  for (const std::int64_t dim : shape) {
    if (dim < 0) return std::nullopt;
    if (dim == 0) {
      empty = true;
      continue;
    }
    if (__builtin_mul_overflow(extent, static_cast<std::uint64_t>(dim), &extent)) return std::nullopt;
  }
  if (extent > kMaxTensorBytes) return std::nullopt;
  return empty ? 0 : extent;
}

std::size_t dtype_size(Dtype dtype) noexcept { return entry(dtype).size; }
std::string_view dtype_name(Dtype dtype) noexcept { return entry(dtype).name; }
bool is_floating(Dtype dtype) noexcept { return entry(dtype).floating; }

std::optional<Dtype> parse_dtype(std::string_view name) noexcept {
  for (const auto& e : kDtypes)
    if (e.name == name) return e.dtype;
  return std::nullopt;
}

float load_float(Dtype dtype, const std::byte* data, std::uint64_t i) noexcept {
  switch (dtype) {
    case Dtype::kF32: {
      float f;
      std::memcpy(&f, data + 4 * i, 4);
      return f;
    }
    case Dtype::kF16:
    case Dtype::kBF16: {
      std::uint16_t h;
      std::memcpy(&h, data + 2 * i, 2);
      return dtype == Dtype::kF16 ? half_bits_to_float(h) : bf16_bits_to_float(h);
    }
    default:
      return 0.0f;
  }
}

std::uint64_t TensorInfo::numel() const noexcept { return checked_numel(shape).value_or(0); }

std::string format_shape(std::span<const std::int64_t> shape) {
  std::string text = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i != 0) text += ", ";
    text += std::to_string(shape[i]);
  }
  return text + "]";
}

// ---------------------------------------------------------------------------------------------
// Reader

SafetensorsFile SafetensorsFile::open(const std::filesystem::path& path) {
  const std::string name = path.string();
  SafetensorsFile file;
  file.path_ = path;

  const int fd = ::open(name.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw bad_input(name, "cannot open: " + errno_text());
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw bad_input(name, "not a regular file");
  }
  file.file_size_ = static_cast<std::uint64_t>(st.st_size);
  if (file.file_size_ == 0) {
    ::close(fd);
    throw bad_input(name, "file is empty");
  }
  if (file.file_size_ < 8) {
    ::close(fd);
    throw bad_input(name, "file is " + std::to_string(file.file_size_) +
                              " bytes, shorter than the 8-byte header length field");
  }
  void* map = ::mmap(nullptr, file.file_size_, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);  // the mapping keeps the file open
  if (map == MAP_FAILED) throw bad_input(name, "cannot map: " + errno_text());
  file.map_ = static_cast<const std::byte*>(map);
  // From here on, a truncation by another process is reported naming the file (SIGBUS).
  file.mapping_registration_ = register_mapping(map, file.file_size_, name);

  std::uint64_t header_bytes = 0;
  std::memcpy(&header_bytes, file.map_, sizeof header_bytes);  // little-endian host
  if (header_bytes > kMaxHeaderBytes) {
    throw bad_input(name, "header length " + std::to_string(header_bytes) + " bytes exceeds the limit of " +
                              std::to_string(kMaxHeaderBytes) + " bytes");
  }
  if (header_bytes > file.file_size_ - 8) {
    throw bad_input(name, "header length " + std::to_string(header_bytes) + " bytes is larger than the " +
                              std::to_string(file.file_size_ - 8) + " bytes that follow it");
  }
  file.data_start_ = 8 + header_bytes;
  const std::string_view header_text(reinterpret_cast<const char*>(file.map_) + 8, header_bytes);
  HeaderParser(name, file.file_size_ - file.data_start_).parse(header_text, file.metadata_, file.tensors_);
  ::madvise(const_cast<std::byte*>(file.map_), file.file_size_, MADV_SEQUENTIAL);
  return file;
}

SafetensorsFile::SafetensorsFile(SafetensorsFile&& other) noexcept { *this = std::move(other); }

SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&& other) noexcept {
  if (this != &other) {
    unmap();
    path_ = std::move(other.path_);
    file_size_ = other.file_size_;
    data_start_ = other.data_start_;
    map_ = std::exchange(other.map_, nullptr);
    mapping_registration_ = std::move(other.mapping_registration_);
    metadata_ = std::move(other.metadata_);
    tensors_ = std::move(other.tensors_);
  }
  return *this;
}

SafetensorsFile::~SafetensorsFile() { unmap(); }

void SafetensorsFile::unmap() noexcept {
  mapping_registration_.reset();
  if (map_ != nullptr) ::munmap(const_cast<std::byte*>(map_), file_size_);
  map_ = nullptr;
}

const TensorInfo* SafetensorsFile::find(std::string_view name) const noexcept {
  for (const auto& t : tensors_)
    if (t.name == name) return &t;
  return nullptr;
}

std::span<const std::byte> SafetensorsFile::bytes(const TensorInfo& tensor) const noexcept {
  pause_at_first_read(path_);
  return {map_ + data_start_ + tensor.begin, tensor.nbytes()};
}

void SafetensorsFile::release(const TensorInfo& tensor, std::uint64_t offset, std::uint64_t length) const noexcept {
  if (map_ == nullptr || length == 0 || offset >= tensor.nbytes()) return;
  length = std::min(length, tensor.nbytes() - offset);
  const auto page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
  const std::uint64_t first = data_start_ + tensor.begin + offset;
  const std::uint64_t aligned = first / page * page;
  // Dropping clean pages of a read-only file mapping is always safe: they are re-read on access.
  ::madvise(const_cast<std::byte*>(map_) + aligned, first + length - aligned, MADV_DONTNEED);
}

// ---------------------------------------------------------------------------------------------
// Writer

std::string build_header(std::span<const TensorInfo> tensors, const Metadata& metadata) {
  json header = json::object();
  if (!metadata.empty()) {
    json meta = json::object();
    for (const auto& [key, value] : metadata) meta[key] = value;
    header[std::string(kMetadataKey)] = std::move(meta);
  }
  for (const auto& t : tensors) {
    header[t.name] = {{"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {t.begin, t.end}}};
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // data section starts 8-byte aligned
  return text;
}

SafetensorsWriter::SafetensorsWriter(std::filesystem::path out, std::vector<TensorSpec> specs, Metadata metadata)
    : out_(std::move(out)), partial_(out_.string() + ".partial") {
  const std::string name = out_.string();
  std::unordered_set<std::string> names;
  std::uint64_t offset = 0;
  std::vector<TensorInfo> infos;
  for (auto& spec : specs) {
    if (spec.name.empty() || spec.name == kMetadataKey || !names.insert(spec.name).second)
      throw bad_input(name, "invalid or duplicate tensor name " + in_quotes(spec.name));
    const auto bytes = checked_tensor_bytes(spec.shape, dtype_size(spec.dtype));
    std::uint64_t end = 0;
    if (!bytes || __builtin_add_overflow(offset, *bytes, &end) || end > kMaxTensorBytes)
      throw bad_input(name, "tensor " + in_quotes(spec.name) + " has an invalid shape " + format_shape(spec.shape));
    TensorInfo info{std::move(spec.name), spec.dtype, std::move(spec.shape), offset, end};
    offset = info.end;
    infos.push_back(info);
    slots_.push_back(Slot{std::move(info), 0});
  }
  const std::string header = build_header(infos, metadata);
  data_start_ = 8 + header.size();

  partial_registration_ = register_partial_output(partial_.native());
  fd_ = ::open(partial_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) throw bad_input(name, "cannot create " + partial_.string() + ": " + errno_text());
  try {
    const std::uint64_t header_bytes = header.size();
    write_at(0, std::as_bytes(std::span(&header_bytes, 1)));
    write_at(8, std::as_bytes(std::span(header.data(), header.size())));
    if (::ftruncate(fd_, static_cast<off_t>(data_start_ + offset)) != 0)
      throw write_failed(name, "could not size " + partial_.string() + ": " + errno_text());
  } catch (...) {
    ::close(fd_);
    ::unlink(partial_.c_str());
    throw;
  }
}

SafetensorsWriter::~SafetensorsWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!finished_) ::unlink(partial_.c_str());
  partial_registration_.reset();
}

SafetensorsWriter::Slot& SafetensorsWriter::slot(std::string_view name) {
  for (auto& s : slots_)
    if (s.info.name == name) return s;
  throw Error(ErrorKind::kInternal, out_.string() + ": no tensor " + in_quotes(name) + " was declared");
}

void SafetensorsWriter::write_at(std::uint64_t offset, std::span<const std::byte> data) {
  while (!data.empty()) {
    const ssize_t n = ::pwrite(fd_, data.data(), data.size(), static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw write_failed(out_.string(), "could not write: " + errno_text());
    data = data.subspan(static_cast<std::size_t>(n));
    offset += static_cast<std::uint64_t>(n);
  }
}

void SafetensorsWriter::append(std::string_view name, std::span<const std::byte> data) {
  HNF_ASSERT(!finished_, "append after finish");
  Slot& s = slot(name);
  if (data.size() > s.info.nbytes() - s.written) {
    throw Error(ErrorKind::kInternal, out_.string() + ": tensor " + in_quotes(name) + " holds " +
                                          std::to_string(s.info.nbytes()) + " bytes; append exceeds it");
  }
  write_at(data_start_ + s.info.begin + s.written, data);
  s.written += data.size();
}

void SafetensorsWriter::finish() {
  HNF_ASSERT(!finished_, "finish called twice");
  for (const auto& s : slots_) {
    if (s.written != s.info.nbytes()) {
      throw Error(ErrorKind::kInternal, out_.string() + ": tensor " + in_quotes(s.info.name) + " is incomplete (" +
                                            std::to_string(s.written) + " of " + std::to_string(s.info.nbytes()) +
                                            " bytes written)");
    }
  }
  if (::fsync(fd_) != 0) throw write_failed(out_.string(), "could not flush: " + errno_text());
  const int fd = std::exchange(fd_, -1);
  if (::close(fd) != 0) throw write_failed(out_.string(), "could not close: " + errno_text());
  if (::rename(partial_.c_str(), out_.c_str()) != 0) throw write_failed(out_.string(), "cannot rename: " + errno_text());
  finished_ = true;
  partial_registration_.reset();
}

}  // namespace hnf::proofs
