// Helpers for tests that write files: a self-removing temporary folder, raw file writing,
// hand-made safetensors files (including malformed ones), and small valid traces.
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "hnf/proofs/safetensors.h"

namespace hnf::testing {

class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "hnf-test-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  [[nodiscard]] const std::filesystem::path& path() const { return path_; }
  [[nodiscard]] std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

inline void write_file(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + path.string());
}

inline std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// A safetensors file from a literal header text (no validation: may be malformed on purpose),
// a declared header length (defaults to the text's length) and a data section.
inline std::string raw_safetensors(const std::string& header, const std::string& data,
                                   std::uint64_t declared_length = UINT64_MAX) {
  const std::uint64_t length = declared_length == UINT64_MAX ? header.size() : declared_length;
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[static_cast<std::size_t>(i)] = static_cast<char>((length >> (8 * i)) & 0xff);
  return bytes + header + data;
}

struct SmallTrace {
  std::int64_t layers = 2;
  std::int64_t heads = 4;
  std::int64_t kv_heads = 2;
  std::int64_t tokens = 8;
  std::int64_t head_dim = 4;
  // Hooks to break the trace on purpose.
  std::function<bool(const std::string& name)> skip = [](const std::string&) { return false; };
  std::function<std::vector<std::int64_t>(const std::string& name, std::vector<std::int64_t>)> reshape =
      [](const std::string&, std::vector<std::int64_t> shape) { return shape; };
  std::function<float(const std::string& name, std::uint64_t index)> value =
      [](const std::string&, std::uint64_t index) { return 0.25f * static_cast<float>(index % 7) - 0.5f; };
  proofs::Metadata metadata_overrides;
};

// Writes an F32 trace (rope "llama") per `spec`.
inline void write_small_trace(const std::filesystem::path& path, const SmallTrace& spec) {
  std::vector<proofs::TensorSpec> tensors;
  for (std::int64_t l = 0; l < spec.layers; ++l) {
    const std::string prefix = "layers." + std::to_string(l) + ".";
    const std::vector<std::int64_t> q_shape{spec.heads, spec.tokens, spec.head_dim};
    const std::vector<std::int64_t> kv_shape{spec.kv_heads, spec.tokens, spec.head_dim};
    for (const auto& [kind, shape] : {std::pair{"q", q_shape}, std::pair{"k", kv_shape},
                                      std::pair{"k_pre_rope", kv_shape}, std::pair{"v", kv_shape}}) {
      const std::string name = prefix + kind;
      if (!spec.skip(name)) tensors.push_back({name, proofs::Dtype::kF32, spec.reshape(name, shape)});
    }
  }
  proofs::Metadata metadata{{"format", "hnf-trace"},   {"format_version", "1"},
                            {"model_id", "test"},      {"model_sha256", "none"},
                            {"tokenizer", "none"},     {"text_source", "test"},
                            {"text_sha256", "none"},   {"num_tokens", std::to_string(spec.tokens)},
                            {"num_layers", std::to_string(spec.layers)},
                            {"dtype", "F32"},          {"rope", "llama"},
                            {"rope_theta", "10000"}};
  for (const auto& [k, v] : spec.metadata_overrides) metadata[k] = v;
  const auto specs = tensors;
  proofs::SafetensorsWriter writer(path, std::move(tensors), metadata);
  for (const auto& t : specs) {
    std::uint64_t n = 1;
    for (auto d : t.shape) n *= static_cast<std::uint64_t>(d);
    std::vector<float> values(n);
    for (std::uint64_t i = 0; i < n; ++i) values[i] = spec.value(t.name, i);
    writer.append(t.name, std::as_bytes(std::span(values)));
  }
  writer.finish();
}

}  // namespace hnf::testing
