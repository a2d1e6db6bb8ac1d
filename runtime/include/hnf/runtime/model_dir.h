// A model folder in the Hugging Face layout (config.json, model.safetensors, tokenizer.model),
// loaded as one consistent unit, and the UTF-8 texts the tools read.
#pragma once

#include <filesystem>
#include <string>

#include "hnf/runtime/llama_model.h"
#include "hnf/runtime/tokenizer.h"

namespace hnf::runtime {

struct ModelDir {
  std::filesystem::path path;
  LlamaModel model;
  Tokenizer tokenizer;
};

// Loads dir/config.json, dir/model.safetensors and dir/tokenizer.model. Throws
// proofs::Error(kBadInput) naming the file when one is missing or invalid, or when the
// tokenizer's vocabulary size differs from the config's vocab_size.
[[nodiscard]] ModelDir load_model_dir(const std::filesystem::path& dir);

// The whole file as bytes (proofs::read_whole_file: refused if it changed while read). Throws
// proofs::Error(kBadInput) "<path>: ..." when it cannot be read or is empty. (UTF-8 validity is
// checked by Tokenizer::encode.)
[[nodiscard]] std::string read_text_file(const std::filesystem::path& path);

}  // namespace hnf::runtime
