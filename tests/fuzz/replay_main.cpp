// Replays files through a fuzz target's LLVMFuzzerTestOneInput in an ordinary build (any
// compiler, no libFuzzer): ctest runs every target over tests/bugs/<target>/ (each crash the
// fuzzer found, kept as a regression test) and its seed corpus. An input the target rejects in
// the wrong way aborts inside the target (fuzz_support.h), so the test fails by signal.
//
//   replay_<target> [--optional DIR] DIR...
//
// Every DIR must exist, except one named after --optional (a target with no bug yet has no
// tests/bugs/<target>/). Files are replayed in name order; the run fails when none was found,
// so a moved corpus cannot pass as "nothing crashed".
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {

std::vector<std::filesystem::path> files_in(const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.is_regular_file()) files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

std::vector<std::uint8_t> read_bytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace

int main(int argc, char** argv) {
  std::size_t replayed = 0;
  for (int i = 1; i < argc; ++i) {
    const bool optional = std::string_view(argv[i]) == "--optional" && i + 1 < argc;
    const std::filesystem::path dir = optional ? argv[++i] : argv[i];
    if (!std::filesystem::is_directory(dir)) {
      if (optional) continue;
      std::fprintf(stderr, "replay: %s: not a directory\n", dir.c_str());
      return 1;
    }
    for (const auto& file : files_in(dir)) {
      std::fprintf(stderr, "replay: %s\n", file.c_str());
      const std::vector<std::uint8_t> bytes = read_bytes(file);
      // A zero-size input is passed as libFuzzer passes it: a non-null pointer, size 0.
      static const std::uint8_t kEmpty = 0;
      LLVMFuzzerTestOneInput(bytes.empty() ? &kEmpty : bytes.data(), bytes.size());
      ++replayed;
    }
  }
  std::printf("replayed %zu inputs\n", replayed);
  if (replayed == 0) {
    std::fprintf(stderr, "replay: no input found: the test would pass without testing anything\n");
    return 1;
  }
  return 0;
}
