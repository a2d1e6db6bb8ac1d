#include "hnf/runtime/model_dir.h"

#include "hnf/proofs/error.h"
#include "hnf/proofs/read_file.h"

namespace hnf::runtime {

ModelDir load_model_dir(const std::filesystem::path& dir) {
  if (!std::filesystem::is_directory(dir)) throw proofs::bad_input(dir.string(), "is not a model folder");
  auto model = LlamaModel::load(dir);
  auto tokenizer = Tokenizer::load(dir / "tokenizer.model");
  if (tokenizer.vocab_size() != model.config().vocab_size) {
    throw proofs::bad_input((dir / "tokenizer.model").string(),
                            "tokenizer has " + std::to_string(tokenizer.vocab_size()) +
                                " pieces but config.json vocab_size is " + std::to_string(model.config().vocab_size));
  }
  return ModelDir{dir, std::move(model), std::move(tokenizer)};
}

std::string read_text_file(const std::filesystem::path& path) {
  std::string text = proofs::read_whole_file(path);
  if (text.empty()) throw proofs::bad_input(path.string(), "text is empty");
  return text;
}

}  // namespace hnf::runtime
