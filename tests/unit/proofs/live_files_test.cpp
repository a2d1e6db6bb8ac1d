// The registries a fatal signal handler reads (live_files.h): mappings of the safetensors reader
// while it lives, partial outputs of the writers until they are renamed or removed.
#include <doctest/doctest.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>

#include "hnf/proofs/live_files.h"
#include "hnf/proofs/safetensors.h"
#include "hnf/proofs/write_file.h"
#include "test_files.h"

using namespace hnf::proofs;
using hnf::testing::TempDir;

namespace {

std::filesystem::path write_small_file(const std::filesystem::path& path) {
  SafetensorsWriter writer(path, {{"t", Dtype::kF32, {1024}}}, {});
  const std::vector<float> x(1024, 1.0f);
  writer.append("t", std::as_bytes(std::span(x)));
  writer.finish();
  return path;
}

}  // namespace

TEST_CASE("a mapping is registered, under its printable name, while the reader lives") {
  TempDir dir;
  // A newline in the name: the message quoting it must stay one line.
  const auto path = write_small_file(dir / "odd\nname.safetensors");
  const std::byte* inside = nullptr;
  {
    auto file = SafetensorsFile::open(path);
    const auto bytes = file.bytes(file.tensors().front());
    inside = bytes.data() + 100;
    const char* name = mapped_file_at(inside);
    REQUIRE(name != nullptr);
    CHECK(std::string(name) == (dir / "odd\\x0aname.safetensors").string());
    const auto past = reinterpret_cast<std::uintptr_t>(bytes.data()) + bytes.size() + 8192;
    CHECK(mapped_file_at(reinterpret_cast<const void*>(past)) == nullptr);  // past the mapping
    // A move keeps the registration; the moved-from reader unregisters nothing.
    SafetensorsFile moved = std::move(file);
    CHECK(mapped_file_at(inside) != nullptr);
  }
  CHECK(mapped_file_at(inside) == nullptr);
  int local = 0;
  CHECK(mapped_file_at(&local) == nullptr);
}

TEST_CASE("partial outputs are registered until renamed or removed, remove_partial_outputs unlinks them") {
  TempDir dir;
  const auto out = dir / "out.safetensors";
  const std::string partial = out.string() + ".partial";
  {
    SafetensorsWriter writer(out, {{"t", Dtype::kF32, {4}}}, {});
    REQUIRE(std::filesystem::exists(partial));
    remove_partial_outputs();  // what a handler that ends the process does
    CHECK(!std::filesystem::exists(partial));
  }
  // A finished writer's file is no longer a partial output: it stays.
  write_small_file(out);
  remove_partial_outputs();
  CHECK(std::filesystem::exists(out));

  // Registrations end with their owner, and entries are reused.
  {
    auto a = register_partial_output((dir / "a.partial").string());
    auto b = register_partial_output((dir / "b.partial").string());
    CHECK(a.active());
    CHECK(b.active());
    hnf::testing::write_file(dir / "a.partial", "x");
    hnf::testing::write_file(dir / "c.partial", "x");
    b.reset();
    hnf::testing::write_file(dir / "b.partial", "x");
    remove_partial_outputs();
    CHECK(!std::filesystem::exists(dir / "a.partial"));
    CHECK(std::filesystem::exists(dir / "b.partial"));  // unregistered
    CHECK(std::filesystem::exists(dir / "c.partial"));  // never registered
  }
  CHECK(!register_partial_output(std::string(kMaxLivePathBytes + 1, 'x')).active());
  // write_texts_atomically unregisters what it renamed.
  write_texts_atomically({{(dir / "r.txt").string(), "text"}});
  remove_partial_outputs();
  CHECK(std::filesystem::exists(dir / "r.txt"));
}
