#include <doctest/doctest.h>

#include <cstring>
#include <random>

#include "hnf/proofs/error.h"
#include "hnf/proofs/safetensors.h"
#include "test_files.h"

using namespace hnf::proofs;
using hnf::testing::raw_safetensors;
using hnf::testing::contains;
using hnf::testing::TempDir;
using hnf::testing::write_file;

namespace {

std::vector<std::byte> random_bytes(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::byte> out(n);
  for (auto& b : out) b = static_cast<std::byte>(rng() & 0xff);
  return out;
}

// The message of the bad-input error that opening `path` raises ("" when it opens).
std::string open_error(const std::filesystem::path& path) {
  try {
    (void)SafetensorsFile::open(path);
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::kBadInput);
    return e.what();
  }
  return "";
}


}  // namespace

TEST_CASE("every dtype round-trips bit-exactly, with metadata, in any chunking") {
  TempDir dir;
  const auto path = dir / "all.safetensors";
  const Dtype dtypes[] = {Dtype::kF32, Dtype::kF16, Dtype::kBF16, Dtype::kI8, Dtype::kU8, Dtype::kI32, Dtype::kI64};
  std::vector<TensorSpec> specs;
  std::vector<std::vector<std::byte>> payloads;
  for (std::size_t i = 0; i < std::size(dtypes); ++i) {
    specs.push_back({"t." + std::string(dtype_name(dtypes[i])), dtypes[i], {3, 5, 7}});
    // Random bytes include NaN payloads, subnormals and negative zeros for the float types.
    payloads.push_back(random_bytes(3 * 5 * 7 * dtype_size(dtypes[i]), i + 1));
  }
  specs.push_back({"empty", Dtype::kF32, {0, 4}});
  specs.push_back({"scalar", Dtype::kI64, {}});
  payloads.emplace_back();
  payloads.push_back(random_bytes(8, 99));
  const Metadata metadata{{"model_id", "round trip"}, {"note", "unicode \xc3\xa9 and \"quotes\""}};
  {
    SafetensorsWriter writer(path, specs, metadata);
    for (std::size_t i = 0; i < specs.size(); ++i) {
      const auto& bytes = payloads[i];
      const std::size_t cut = bytes.size() / 3;  // two uneven chunks
      writer.append(specs[i].name, std::span(bytes).first(cut));
      writer.append(specs[i].name, std::span(bytes).subspan(cut));
    }
    writer.finish();
  }
  const auto file = SafetensorsFile::open(path);
  CHECK(file.metadata() == metadata);
  REQUIRE(file.tensors().size() == specs.size());
  for (std::size_t i = 0; i < specs.size(); ++i) {
    const TensorInfo* t = file.find(specs[i].name);
    REQUIRE(t != nullptr);
    CHECK(t->dtype == specs[i].dtype);
    CHECK(t->shape == specs[i].shape);
    const auto bytes = file.bytes(*t);
    REQUIRE(bytes.size() == payloads[i].size());
    CHECK(std::equal(bytes.begin(), bytes.end(), payloads[i].begin()));
  }
  // Data starts 8-byte aligned, as the reference implementation writes it.
  CHECK((file.file_size() - 3 * 5 * 7 * (4 + 2 + 2 + 1 + 1 + 4 + 8) - 8) % 8 == 0);
}

TEST_CASE("a file written by another safetensors writer is read") {
  // Header padded with spaces, keys in a different order, metadata present: as the reference
  // Python writer produces.
  TempDir dir;
  const std::string header =
      R"({"b":{"dtype":"I32","shape":[2],"data_offsets":[8,16]},"__metadata__":{"format":"pt"},)"
      R"("a":{"shape":[2],"data_offsets":[0,8],"dtype":"F32"}}    )";
  std::string data(16, '\0');
  const float a[2] = {1.5f, -2.0f};
  const std::int32_t b[2] = {7, -9};
  std::memcpy(data.data(), a, 8);
  std::memcpy(data.data() + 8, b, 8);
  write_file(dir / "x.safetensors", raw_safetensors(header, data));
  const auto file = SafetensorsFile::open(dir / "x.safetensors");
  CHECK(file.metadata().at("format") == "pt");
  REQUIRE(file.tensors().size() == 2);
  CHECK(file.tensors()[0].name == "a");  // sorted by offset
  float back[2];
  std::memcpy(back, file.bytes(*file.find("a")).data(), 8);
  CHECK(back[0] == 1.5f);
  CHECK(back[1] == -2.0f);
}

TEST_CASE("bad files are rejected with one line naming the file and the problem") {
  TempDir dir;
  const std::string ok_tensor = R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  struct Case {
    const char* what;
    std::string bytes;
    const char* expected;
  };
  const Case cases[] = {
      {"empty file", "", "file is empty"},
      {"shorter than the length field", std::string("\x05\x00\x00", 3), "shorter than the 8-byte header length field"},
      {"header length beyond the file", raw_safetensors(ok_tensor, std::string(8, '\0'), 4096),
       "header length 4096 bytes is larger than the"},
      {"header over 100 MB", raw_safetensors(ok_tensor, std::string(8, '\0'), 100'000'001),
       "exceeds the limit of 100000000 bytes"},
      {"header not JSON", raw_safetensors("{not json", ""), "header is not valid JSON"},
      {"header JSON but not an object", raw_safetensors("[1,2]", ""), "header is not a JSON object"},
      {"unknown dtype", raw_safetensors(R"({"t":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}})", std::string(8, '\0')),
       "tensor 't' has unsupported dtype 'F64'"},
      {"shape size mismatch", raw_safetensors(R"({"t":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", std::string(8, '\0')),
       "needs 12 bytes but data_offsets [0, 8] span 8"},
      {"offsets out of range", raw_safetensors(R"({"t":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", std::string(8, '\0')),
       "beyond the data section of 8 bytes"},
      {"overlapping offsets",
       raw_safetensors(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                       std::string(12, '\0')),
       "overlap"},
      {"begin after end", raw_safetensors(R"({"t":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", std::string(8, '\0')),
       "with begin after end"},
      {"negative shape", raw_safetensors(R"({"t":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", std::string(8, '\0')),
       "shape entry that is not a non-negative integer"},
      {"missing offsets", raw_safetensors(R"({"t":{"dtype":"F32","shape":[2]}})", std::string(8, '\0')),
       "needs 'data_offsets' as two non-negative integers"},
      {"metadata value not a string", raw_safetensors(R"({"__metadata__":{"n":3}})", ""),
       "__metadata__ value of 'n' is not a string"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.what);
    const auto path = dir / "bad.safetensors";
    write_file(path, c.bytes);
    const std::string message = open_error(path);
    CHECK(message.starts_with(path.string() + ": "));
    CHECK(contains(message, c.expected));
    CHECK(!contains(message, "\n"));
  }
  const std::string missing = open_error(dir / "missing.safetensors");
  CHECK(contains(missing, "missing.safetensors: cannot open: No such file or directory"));
}

TEST_CASE("an abandoned or failed write leaves nothing at the output path") {
  TempDir dir;
  const auto out = dir / "out.safetensors";
  {
    SafetensorsWriter writer(out, {{"t", Dtype::kF32, {4}}}, {});
    const float x[2] = {1, 2};
    writer.append("t", std::as_bytes(std::span(x)));
    CHECK(std::filesystem::exists(out.string() + ".partial"));
    // incomplete tensor: finish refuses
    CHECK_THROWS_AS(writer.finish(), Error);
  }
  CHECK(!std::filesystem::exists(out));
  CHECK(!std::filesystem::exists(out.string() + ".partial"));

  try {
    SafetensorsWriter writer(dir / "no-such-dir" / "out.safetensors", {{"t", Dtype::kF32, {1}}}, {});
    FAIL("writer opened a file in a missing folder");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::kBadInput);
    CHECK(contains(e.what(), "no-such-dir/out.safetensors: cannot create"));
  }
  CHECK_THROWS_AS(SafetensorsWriter(out, {{"t", Dtype::kF32, {1}}, {"t", Dtype::kF32, {1}}}, {}), Error);

  SafetensorsWriter writer(out, {{"t", Dtype::kF32, {1}}}, {});
  const float too_many[2] = {1, 2};
  CHECK_THROWS_AS(writer.append("t", std::as_bytes(std::span(too_many))), Error);
  CHECK_THROWS_AS(writer.append("u", std::as_bytes(std::span(too_many).first(1))), Error);
}

TEST_CASE("release drops pages without changing what is read") {
  TempDir dir;
  const auto path = dir / "big.safetensors";
  const auto payload = random_bytes(1 << 20, 5);
  {
    SafetensorsWriter writer(path, {{"t", Dtype::kU8, {1 << 20}}}, {});
    writer.append("t", payload);
    writer.finish();
  }
  const auto file = SafetensorsFile::open(path);
  const TensorInfo& t = file.tensors().front();
  file.release(t, 0, t.nbytes());
  file.release(t, 12345, 999999999);  // clamped to the tensor
  const auto bytes = file.bytes(t);
  CHECK(std::equal(bytes.begin(), bytes.end(), payload.begin()));
}

TEST_CASE("checked_tensor_bytes: exact up to 2^63 - 1 bytes, nullopt for anything that would wrap") {
  constexpr std::int64_t kMax = INT64_MAX;
  using Shape = std::vector<std::int64_t>;
  // 2^63 - 1 = 7^2 x 73 x 127 x 337 x 92737 x 649657: the limit itself, reached by a product.
  const Shape mersenne{49, 73, 127, 337, 92737, 649657};
  CHECK(checked_tensor_bytes(mersenne, 1) == std::uint64_t{kMax});
  CHECK(checked_tensor_bytes(Shape{kMax}, 1) == std::uint64_t{kMax});
  CHECK(!checked_tensor_bytes(mersenne, 2).has_value());           // 2^64 - 2: no wrap, over the limit
  CHECK(!checked_tensor_bytes(Shape{std::int64_t{1} << 62}, 2).has_value());  // exactly 2^63
  CHECK(checked_tensor_bytes(Shape{(std::int64_t{1} << 62) - 1}, 2) == (std::uint64_t{1} << 63) - 2);
  // Products that wrap 64 bits to a small number (the inputs of issue 17).
  CHECK(!checked_tensor_bytes(Shape{std::int64_t{1} << 62}, 4).has_value());           // 2^64 -> 0
  CHECK(!checked_tensor_bytes(Shape{(std::int64_t{1} << 61) + 1}, 8).has_value());     // 2^64 + 8 -> 8
  CHECK(!checked_tensor_bytes(Shape{std::int64_t{1} << 31, std::int64_t{1} << 31}, 4).has_value());
  CHECK(!checked_tensor_bytes(Shape{std::int64_t{1} << 32, std::int64_t{1} << 32}, 1).has_value());
  CHECK(!checked_tensor_bytes(Shape{kMax, kMax}, 1).has_value());
  // Negative dimensions; zero dimensions beside a product that overflows.
  CHECK(!checked_tensor_bytes(Shape{-1}, 1).has_value());
  CHECK(!checked_tensor_bytes(Shape{4, -1, 0}, 1).has_value());
  CHECK(checked_tensor_bytes(Shape{0, kMax}, 1) == 0u);
  CHECK(!checked_tensor_bytes(Shape{0, kMax}, 2).has_value());
  CHECK(!checked_tensor_bytes(Shape{0, std::int64_t{1} << 62, 4}, 1).has_value());
  // Ordinary shapes, a scalar, an empty tensor.
  CHECK(checked_tensor_bytes(Shape{4, 128, 64}, 2) == 65536u);
  CHECK(checked_tensor_bytes(Shape{}, 8) == 8u);
  CHECK(checked_tensor_bytes(Shape{3, 0}, 4) == 0u);
}

TEST_CASE("the reader refuses a header whose size computation would wrap, before any read") {
  TempDir dir;
  const auto path = dir / "wrap.safetensors";
  const std::pair<std::string, std::string> cases[] = {
      {R"({"t":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,0]}})", ""},
      {R"({"t":{"dtype":"I64","shape":[2305843009213693953],"data_offsets":[0,8]}})", std::string(8, '\0')},
      {R"({"t":{"dtype":"F32","shape":[2147483648,2147483648],"data_offsets":[0,0]}})", ""},
  };
  for (const auto& [header, data] : cases) {
    CAPTURE(header);
    write_file(path, raw_safetensors(header, data));
    CHECK(contains(open_error(path), "needs more than 2^63 - 1 bytes"));
  }
}
