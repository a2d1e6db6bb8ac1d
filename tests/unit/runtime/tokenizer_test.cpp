#include <doctest/doctest.h>

#include <sentencepiece_trainer.h>

#include <string>
#include <vector>

#include "hnf/proofs/error.h"
#include "hnf/runtime/tokenizer.h"
#include "test_files.h"

using hnf::runtime::Tokenizer;

namespace {

const char* const kTrainingText =
    "The quick brown fox jumps over the lazy dog.\n"
    "A key value cache stores the keys and values of every position.\n"
    "Quantized caches trade precision for memory; the error must stay bounded.\n"
    "Attention weights are a softmax of scaled dot products.\n"
    "Every layer appends its keys, then attends over the cached positions.\n"
    "The tokenizer splits text into pieces, and pieces into bytes when it must.\n"
    "Numbers like 1024, 4096 and 65536 appear in model shapes.\n"
    "Caf\xc3\xa9 au lait, na\xc3\xafve r\xc3\xa9sum\xc3\xa9.\n";

// Trains a tiny BPE model in `dir` and returns its path. byte_fallback decides whether the
// model has the <0x.."> byte pieces (and so <0x0A> for newlines).
std::filesystem::path train(const hnf::testing::TempDir& dir, bool byte_fallback) {
  std::string text;
  for (int i = 0; i < 20; ++i) text += kTrainingText;
  hnf::testing::write_file(dir / "corpus.txt", text);
  const auto prefix = (dir / (byte_fallback ? "bpe" : "bpe-nobytes")).string();
  const auto status = sentencepiece::SentencePieceTrainer::Train({
      {"input", (dir / "corpus.txt").string()},
      {"model_prefix", prefix},
      {"model_type", "bpe"},
      {"vocab_size", byte_fallback ? "384" : "100"},
      {"byte_fallback", byte_fallback ? "true" : "false"},
      {"character_coverage", "1.0"},
      {"normalization_rule_name", "identity"},
      {"remove_extra_whitespaces", "false"},
      {"minloglevel", "2"},
  });
  REQUIRE_MESSAGE(status.ok(), status.ToString());
  return prefix + ".model";
}

}  // namespace

TEST_CASE("multi-line UTF-8 text round-trips, lines joined by the <0x0A> piece") {
  hnf::testing::TempDir dir;
  const Tokenizer tokenizer = Tokenizer::load(train(dir, true));
  CHECK(tokenizer.vocab_size() == 384);
  CHECK(tokenizer.bos_id() == 1);
  CHECK(tokenizer.eos_id() == 2);

  const std::vector<std::string> texts{
      "The quick brown fox.",
      "first line\nsecond line",
      "\nleading newline, empty line next\n\nand a trailing one\n",
      "  indented line\n\ttabbed line",
      "unseen characters: \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\xa6\x8a \xce\xbb\n(byte fallback)",
      "",
  };
  for (const std::string& text : texts) {
    CAPTURE(text);
    const std::vector<std::int32_t> ids = tokenizer.encode(text, "sample.txt");
    CHECK(tokenizer.decode(ids) == text);
  }
  // "a\nb": the ids of "a", the <0x0A> piece, the ids of "b".
  const auto a = tokenizer.encode("a", "a"), b = tokenizer.encode("b", "b");
  const auto ab = tokenizer.encode("a\nb", "ab");
  REQUIRE(ab.size() == a.size() + 1 + b.size());
  CHECK(std::vector<std::int32_t>(ab.begin(), ab.begin() + static_cast<std::ptrdiff_t>(a.size())) == a);
  CHECK(tokenizer.decode(std::span(ab).subspan(a.size(), 1)) == "\n");
}

TEST_CASE("text that is not UTF-8 is refused naming its source") {
  hnf::testing::TempDir dir;
  const Tokenizer tokenizer = Tokenizer::load(train(dir, true));
  for (const auto& [text, offset] : std::vector<std::pair<std::string, int>>{
           {"abc\xff", 3}, {"ok \xc3", 3}, {"\xc0\xafoverlong", 0}, {"x\xed\xa0\x80surrogate", 1}, {"\xf4\x90\x80\x80", 0}}) {
    CHECK_THROWS_WITH_AS((void)tokenizer.encode(text, "notes.txt"),
                         ("notes.txt: not valid UTF-8 at byte offset " + std::to_string(offset)).c_str(),
                         hnf::proofs::Error);
  }
}

TEST_CASE("decode refuses ids outside the vocabulary") {
  hnf::testing::TempDir dir;
  const auto model = train(dir, true);
  const Tokenizer tokenizer = Tokenizer::load(model);
  const std::vector<std::int32_t> ids{5, 384};
  CHECK_THROWS_WITH_AS((void)tokenizer.decode(ids),
                       (model.string() + ": token id 384 at index 1 is outside the vocabulary [0, 384)").c_str(),
                       hnf::proofs::Error);
}

TEST_CASE("a model without byte fallback encodes single lines but refuses newlines") {
  hnf::testing::TempDir dir;
  const auto model = train(dir, false);
  const Tokenizer tokenizer = Tokenizer::load(model);
  CHECK(tokenizer.decode(tokenizer.encode("the cache", "s.txt")) == "the cache");
  CHECK_THROWS_WITH_AS((void)tokenizer.encode("two\nlines", "s.txt"),
                       (model.string() + ": the tokenizer has no byte-fallback piece <0x0A> to encode a newline of s.txt")
                           .c_str(),
                       hnf::proofs::Error);
}

TEST_CASE("a missing or malformed model file is refused naming it") {
  hnf::testing::TempDir dir;
  CHECK_THROWS_WITH_AS((void)Tokenizer::load(dir / "absent.model"),
                       doctest::Contains(((dir / "absent.model").string() + ": cannot open the tokenizer model: ").c_str()),
                       hnf::proofs::Error);
  hnf::testing::write_file(dir / "garbage.model", "this is not a protobuf \xff\xff\xff");
  CHECK_THROWS_WITH_AS((void)Tokenizer::load(dir / "garbage.model"),
                       doctest::Contains(((dir / "garbage.model").string() + ": not a SentencePiece model").c_str()),
                       hnf::proofs::Error);
}
