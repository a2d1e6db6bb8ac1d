#include "hnf/runtime/tokenizer.h"

#include <sentencepiece_processor.h>

#include "hnf/proofs/error.h"
#include "hnf/proofs/json_limits.h"

namespace hnf::runtime {
namespace {

constexpr std::string_view kNewlinePiece = "<0x0A>";

// Offset of the first byte that is not part of well-formed UTF-8 (no overlong forms, no
// surrogates, nothing above U+10FFFF), or npos.
std::size_t invalid_utf8_offset(std::string_view text) {
  const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(text[i]); };
  std::size_t i = 0;
  while (i < text.size()) {
    const unsigned char lead = byte(i);
    std::size_t length = 0;
    unsigned char low = 0x80, high = 0xbf;  // range of the first continuation byte
    if (lead < 0x80) {
      length = 1;
    } else if (lead >= 0xc2 && lead <= 0xdf) {
      length = 2;
    } else if (lead >= 0xe0 && lead <= 0xef) {
      length = 3;
      if (lead == 0xe0) low = 0xa0;   // overlong
      if (lead == 0xed) high = 0x9f;  // surrogates
    } else if (lead >= 0xf0 && lead <= 0xf4) {
      length = 4;
      if (lead == 0xf0) low = 0x90;   // overlong
      if (lead == 0xf4) high = 0x8f;  // above U+10FFFF
    } else {
      return i;
    }
    if (i + length > text.size()) return i;
    for (std::size_t j = 1; j < length; ++j) {
      const unsigned char b = byte(i + j);
      if (j == 1 ? (b < low || b > high) : (b < 0x80 || b > 0xbf)) return i;
    }
    i += length;
  }
  return std::string_view::npos;
}

}  // namespace

Tokenizer::Tokenizer() : processor_(std::make_unique<sentencepiece::SentencePieceProcessor>()) {}
Tokenizer::Tokenizer(Tokenizer&& other) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&& other) noexcept = default;
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::load(const std::filesystem::path& model_file) {
  Tokenizer t;
  t.model_file_ = model_file.string();
  // Read here, bounded, and parsed from memory: SentencePiece's own Load reads any size.
  const std::string bytes = proofs::read_regular_file(model_file, kMaxTokenizerBytes, "the tokenizer model");
  const auto status = t.processor_->LoadFromSerializedProto(bytes);
  if (!status.ok()) {
    throw proofs::bad_input(t.model_file_, "not a SentencePiece model: " + std::string(status.message()));
  }
  // PieceToId answers unk for an unknown piece, so the piece is confirmed by its spelling.
  const int id = t.processor_->PieceToId(kNewlinePiece);
  if (t.processor_->IdToPiece(id) == kNewlinePiece) t.newline_id_ = id;
  return t;
}

std::int32_t Tokenizer::vocab_size() const { return processor_->GetPieceSize(); }
std::int32_t Tokenizer::bos_id() const { return processor_->bos_id(); }
std::int32_t Tokenizer::eos_id() const { return processor_->eos_id(); }

std::vector<std::int32_t> Tokenizer::encode(std::string_view text, std::string_view source_name) const {
  if (const std::size_t bad = invalid_utf8_offset(text); bad != std::string_view::npos) {
    throw proofs::bad_input(source_name, "not valid UTF-8 at byte offset " + std::to_string(bad));
  }
  if (text.find('\n') != std::string_view::npos && !newline_id_) {
    throw proofs::bad_input(model_file_, "the tokenizer has no byte-fallback piece <0x0A> to encode a newline of " +
                                             std::string(source_name));
  }
  std::vector<std::int32_t> ids;
  std::vector<int> line_ids;
  std::size_t start = 0;
  while (true) {
    const std::size_t end = text.find('\n', start);
    const std::string_view line = text.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
    const auto status = processor_->Encode(line, &line_ids);
    if (!status.ok()) {
      throw proofs::bad_input(source_name, "SentencePiece cannot encode it: " + std::string(status.message()));
    }
    ids.insert(ids.end(), line_ids.begin(), line_ids.end());
    if (end == std::string_view::npos) break;
    ids.push_back(*newline_id_);
    start = end + 1;
  }
  return ids;
}

std::string Tokenizer::decode(std::span<const std::int32_t> ids) const {
  const std::int32_t vocab = vocab_size();
  std::string text;
  std::vector<int> line;
  std::string decoded;
  const auto flush = [&] {
    const auto status = processor_->Decode(line, &decoded);
    HNF_ASSERT(status.ok(), "SentencePiece failed to decode valid ids");
    text += decoded;
    line.clear();
  };
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= vocab) {
      throw proofs::bad_input(model_file_, "token id " + std::to_string(ids[i]) + " at index " + std::to_string(i) +
                                               " is outside the vocabulary [0, " + std::to_string(vocab) + ")");
    }
    if (newline_id_ && ids[i] == *newline_id_) {
      flush();
      text += '\n';
    } else {
      line.push_back(ids[i]);
    }
  }
  flush();
  return text;
}

}  // namespace hnf::runtime
