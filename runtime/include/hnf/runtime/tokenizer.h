// A SentencePiece tokenizer (the tokenizer.model of Llama-family checkpoints) that handles
// multi-line text. SentencePiece works on single lines: its trainers never see a newline, and
// each Encode call adds its own word-boundary prefix. So text is encoded line by line with the
// byte-fallback piece <0x0A> between lines, and decoded the same way round, which makes
// decode(encode(text)) == text for UTF-8 text under an identity-normalising model.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace sentencepiece {
class SentencePieceProcessor;
}  // namespace sentencepiece

namespace hnf::runtime {

// Largest tokenizer.model read: Llama's is 0.5 MB, the largest vocabularies' a few MB.
inline constexpr std::uint64_t kMaxTokenizerBytes = std::uint64_t{64} << 20;

class Tokenizer {
 public:
  // Loads a SentencePiece model file. Throws proofs::Error(kBadInput) "<model_file>: ..." when
  // it is missing, not a regular file, over kMaxTokenizerBytes or not a SentencePiece model.
  static Tokenizer load(const std::filesystem::path& model_file);

  Tokenizer(Tokenizer&& other) noexcept;
  Tokenizer& operator=(Tokenizer&& other) noexcept;
  ~Tokenizer();

  [[nodiscard]] std::int32_t vocab_size() const;
  // -1 when the model defines no such token.
  [[nodiscard]] std::int32_t bos_id() const;
  [[nodiscard]] std::int32_t eos_id() const;

  // The ids of `text`, without BOS/EOS (the caller decides where a document starts). Lines
  // are encoded separately and joined by the <0x0A> piece. Throws proofs::Error(kBadInput)
  // "<source_name>: ..." when the text is not valid UTF-8, and "<model file>: ..." when it
  // has a newline but the model has no <0x0A> piece (it was trained without byte_fallback).
  [[nodiscard]] std::vector<std::int32_t> encode(std::string_view text, std::string_view source_name) const;

  // The text of `ids`: each <0x0A> becomes '\n' and the runs between them are decoded as
  // lines. Throws proofs::Error(kBadInput) naming the model file when an id is outside
  // [0, vocab_size()). ids [n].
  [[nodiscard]] std::string decode(std::span<const std::int32_t> ids) const;

 private:
  Tokenizer();

  std::string model_file_;
  std::unique_ptr<sentencepiece::SentencePieceProcessor> processor_;
  std::optional<std::int32_t> newline_id_;  // the <0x0A> byte piece, when the model has one
};

}  // namespace hnf::runtime
