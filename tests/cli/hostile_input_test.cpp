// Hostile input through the hnf-verify binary (issue 17 item 1, docs/hostile-input.md): for every
// reader and every class of malformed file (size overflow, negative or huge dimensions, zero or
// huge block, integers beyond their type, non-finite or exponent-heavy numbers, deep nesting,
// very long strings, files that are not regular), the tool exits 3 with exactly one stderr line
// naming the file and the problem, and writes no output file. Never a signal, never exit 4.
#include <doctest/doctest.h>

#include <sys/stat.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "hnf/proofs/certificate.h"
#include "hnf/proofs/error.h"
#include "hnf/runtime/tokenizer.h"
#include "run_cli.h"
#include "small_trace.h"
#include "test_files.h"
#include "tiny_certificate.h"
#include "tiny_llama.h"

namespace fs = std::filesystem;
using hnf::testing::contains;
using hnf::testing::quote;
using hnf::testing::raw_safetensors;
using hnf::testing::TempDir;
using hnf::testing::write_file;
using Json = nlohmann::json;
using Run = hnf::testing::CliRun;

namespace {

const fs::path kSource = HNF_SOURCE_DIR;
const std::string kTool = std::string("hnf-verify ") + HNF_TOOL_VERSION;

// The binary on a hostile input, killed after 60 s: a reader that regresses into waiting (on a
// FIFO) or reading forever (/dev/zero) fails with exit 124 instead of hanging the suite. The
// prefix goes where run_cli.h puts environment assignments, before the command.
Run run(const std::string& args) { return hnf::testing::hnf_verify(args, "timeout 60 "); }

std::size_t line_count(const std::string& text) { return static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n')); }

// Exit 3, exactly one stderr line of bounded length naming `file` and `problem`, and none of
// `outputs` (nor its ".partial") on disk.
void expect_refused(const Run& run, const fs::path& file, const std::string& problem,
                    const std::vector<fs::path>& outputs = {}) {
  CHECK_MESSAGE(run.exit_code == 3, run.err);
  CHECK_MESSAGE(line_count(run.err) == 1, run.err);
  CHECK_MESSAGE(run.err.size() < 2 * hnf::proofs::kMaxProblemBytes + 512, run.err.size());
  CHECK_MESSAGE(contains(run.err, file.string() + ": "), run.err);
  CHECK_MESSAGE(contains(run.err, problem), run.err);
  for (const auto& out : outputs) {
    CHECK_MESSAGE(!fs::exists(out), out.string());
    CHECK_MESSAGE(!fs::exists(out.string() + ".partial"), out.string());
  }
}

std::string repeated(const std::string& part, std::size_t times) {
  std::string text;
  text.reserve(part.size() * times);
  for (std::size_t i = 0; i < times; ++i) text += part;
  return text;
}

// `{"<key>": [[[...]]]}` nested `depth` arrays deep: far past any limit, but a few hundred KB.
std::string deeply_nested(const std::string& key, std::size_t depth) {
  return "{\"" + key + "\": " + repeated("[", depth) + repeated("]", depth) + "}";
}

constexpr std::size_t kDeep = 100'000;

// A certified certificate this binary accepts, as JSON to break.
Json tiny_certificate_json() {
  hnf::proofs::Certificate c = hnf::testing::tiny_certificate();
  c.tool_version = kTool;
  return Json::parse(hnf::proofs::certificate_to_json(c));
}

// `j` written with a recomputed certificate_sha256, so the reader gets past the content hash
// and the refusal is the defect's own.
void write_resealed(const fs::path& path, const Json& j) {
  write_file(path, hnf::proofs::reseal_certificate_json(j.dump(1), path.string()));
}

}  // namespace

TEST_CASE("safetensors: sizes that overflow, huge or negative dimensions, huge offsets") {
  TempDir dir;
  const auto path = dir / "bad.safetensors";
  const auto inspect_raw = [&](const std::string& header, const std::string& data = "") {
    write_file(path, raw_safetensors(header, data));
    return run("inspect --raw " + quote(path));
  };
  const auto tensor = [](const std::string& dtype, const std::string& shape, const std::string& offsets) {
    return R"({"t":{"dtype":")" + dtype + R"(","shape":)" + shape + R"(,"data_offsets":)" + offsets + "}}";
  };
  SUBCASE("[2^62] F32: 2^64 bytes wrap to 0") {
    expect_refused(inspect_raw(tensor("F32", "[4611686018427387904]", "[0,0]")), path, "needs more than 2^63 - 1 bytes");
  }
  SUBCASE("[2^61 + 1] I64: 2^64 + 8 bytes wrap to 8") {
    expect_refused(inspect_raw(tensor("I64", "[2305843009213693953]", "[0,8]"), std::string(8, '\0')), path,
                   "needs more than 2^63 - 1 bytes");
  }
  SUBCASE("[2^31, 2^31] F32") {
    expect_refused(inspect_raw(tensor("F32", "[2147483648,2147483648]", "[0,0]")), path, "needs more than 2^63 - 1 bytes");
  }
  SUBCASE("a zero dimension beside dimensions whose product overflows") {
    expect_refused(inspect_raw(tensor("U8", "[0,9223372036854775807,2]", "[0,0]")), path, "needs more than 2^63 - 1 bytes");
  }
  SUBCASE("a dimension beyond int64") {
    expect_refused(inspect_raw(tensor("U8", "[18446744073709551615]", "[0,0]")), path, "above 2^63 - 1");
  }
  SUBCASE("a negative dimension") {
    expect_refused(inspect_raw(tensor("F32", "[-1]", "[0,0]")), path, "shape entry that is not a non-negative integer");
  }
  SUBCASE("data_offsets at 2^64 - 1") {
    expect_refused(inspect_raw(tensor("U8", "[1]", "[18446744073709551614,18446744073709551615]")), path,
                   "beyond the data section");
  }
  SUBCASE("a header length of 2^64 - 1") {
    write_file(path, raw_safetensors("{}", "", UINT64_MAX - 1));
    expect_refused(run("inspect --raw " + quote(path)), path, "exceeds the limit of 100000000 bytes");
  }
  SUBCASE("a shape entry beyond the range of a double") {
    expect_refused(inspect_raw(tensor("F32", "[1e999]", "[0,0]")), path, "header has a number beyond the range of a double");
  }
  SUBCASE("a header nested 100,000 deep") {
    expect_refused(inspect_raw(deeply_nested("t", kDeep)), path, "header nests arrays and objects deeper than 32 levels");
  }
  SUBCASE("a tensor name with a newline: the message stays one line") {
    expect_refused(inspect_raw(R"({"a\nb":{"dtype":"F32","shape":[1],"data_offsets":[0,0]}})"), path, "a\\x0ab");
  }
  SUBCASE("a 1 MB tensor name in the message is cut") {
    const std::string name(1 << 20, 'n');
    expect_refused(inspect_raw(R"({")" + name + R"(":{"dtype":"F32","shape":[1],"data_offsets":[0,0]}})"), path,
                   "more bytes)");
  }
}

TEST_CASE("trace: metadata integers beyond the file, non-finite rope_theta, values no format stores, zero heads") {
  TempDir dir;
  const auto path = dir / "t.safetensors";
  hnf::testing::SmallTrace spec;
  SUBCASE("num_layers 10^18 (would size the layer table)") {
    spec.metadata_overrides["num_layers"] = "1000000000000000000";
    hnf::testing::write_small_trace(path, spec);
    expect_refused(run("inspect " + quote(path)), path, "metadata num_layers 1000000000000000000 exceeds the 8 tensors");
  }
  SUBCASE("num_tokens beyond int64") {
    spec.metadata_overrides["num_tokens"] = "99999999999999999999";
    hnf::testing::write_small_trace(path, spec);
    expect_refused(run("inspect " + quote(path)), path, "metadata num_tokens '99999999999999999999' is not a positive integer");
  }
  SUBCASE("rope_theta beyond a double, infinite, not a number, negative") {
    for (const char* theta : {"1e999", "inf", "nan", "-5"}) {
      CAPTURE(theta);
      spec.metadata_overrides["rope_theta"] = theta;
      hnf::testing::write_small_trace(path, spec);
      expect_refused(run("inspect " + quote(path)), path, "rope_theta is missing or not a positive number");
    }
  }
  SUBCASE("keys or values beyond what the cache formats store (F32 1e6, -70000, infinity)") {
    for (const char* tensor : {"layers.1.k", "layers.0.v"}) {
      for (const float bad : {1e6f, -70000.0f, std::numeric_limits<float>::infinity()}) {
        CAPTURE(tensor);
        CAPTURE(bad);
        spec.value = [&](const std::string& name, std::uint64_t index) {
          return name == tensor && index == 5 ? bad : 0.25f * static_cast<float>(index % 7) - 0.5f;
        };
        hnf::testing::write_small_trace(path, spec);
        const std::string problem =
            std::isfinite(bad) ? "is outside the fp16 range [-65504, 65504]: no cache format stores it" : "non-finite value";
        // Was a crash (exit 134): the quantizer threw inside an OpenMP loop.
        expect_refused(run("analyze " + quote(path) + " --eps 0.05 --out " + quote(dir / "a.json")), path,
                       "tensor " + std::string(tensor) + " holds", {dir / "a.json"});
        // certify and check --recompute read the trace through the same analysis (StoredRows).
        expect_refused(run("analyze " + quote(path) + " --bits 4 --out " + quote(dir / "b.json")), path, problem,
                       {dir / "b.json"});
      }
    }
  }
  SUBCASE("zero query heads") {
    spec.reshape = [](const std::string& name, std::vector<std::int64_t> shape) {
      if (name.ends_with(".q")) shape[0] = 0;
      return shape;
    };
    hnf::testing::write_small_trace(path, spec);
    expect_refused(run("inspect " + quote(path)), path, "no queries are recorded");
  }
}

TEST_CASE("certificate: integers beyond their type, zero block, numbers, nesting, long strings") {
  TempDir dir;
  const auto path = dir / "c.json";
  const auto check = [&] { return run("check " + quote(path)); };
  Json j = tiny_certificate_json();
  SUBCASE("the untouched certificate is accepted (the cases below fail for their defect)") {
    write_resealed(path, j);
    const Run run = check();
    CHECK_MESSAGE(run.exit_code == 0, run.err);
  }
  SUBCASE("block 2^32 + 16 is not read as 16") {
    j["map"]["block"] = 4294967312LL;
    write_resealed(path, j);
    expect_refused(check(), path, "map.block is 4294967312, not an integer in [0, 2147483647]");
  }
  SUBCASE("version 2^32 + 1 is not read as 1") {
    j["version"] = 4294967297LL;
    write_resealed(path, j);
    expect_refused(check(), path, "certificate.version is 4294967297, not an integer in [0, 2147483647]");
  }
  SUBCASE("block 0 stops the check before the division by the block") {
    j["map"]["block"] = 0;
    write_resealed(path, j);
    expect_refused(check(), path, "map: block must be 16, 32 or 64");
  }
  SUBCASE("an unsigned value above INT64_MAX is not wrapped to a negative one") {
    j["map"]["layers"] = 18446744073709551615ULL;
    write_resealed(path, j);
    expect_refused(check(), path, "map.layers is 18446744073709551615, not an integer in [0, 9223372036854775807]");
  }
  SUBCASE("a negative query position") {
    j["scope"]["s1_query_positions"][0] = -5;
    write_resealed(path, j);
    expect_refused(check(), path, "scope.s1_query_positions has element 0 = -5, not an integer in");
  }
  SUBCASE("necessity bits 65") {
    j["obligations"][1]["rows"]["bits"][0] = 65;
    write_resealed(path, j);
    expect_refused(check(), path, "rows.bits has element 0 = 65, not an integer in [0, 64]");
  }
  SUBCASE("bits_per_element 1e999 (beyond a double)") {
    j["bits_per_element"] = 12345.5;
    std::string text = j.dump(1);
    const auto at = text.find("12345.5");
    REQUIRE(at != std::string::npos);
    write_file(path, text.replace(at, 7, "1e999"));
    expect_refused(check(), path, "has a number beyond the range of a double");
  }
  SUBCASE("bits_per_element 1e300 (finite, exponent-heavy)") {
    j["bits_per_element"] = 1e300;
    write_resealed(path, j);
    expect_refused(check(), path, "bits_per_element is 1e+300, not a number in [0.0, 64.0]");
  }
  SUBCASE("nesting 100,000 deep") {
    write_file(path, deeply_nested("format", kDeep));
    expect_refused(check(), path, "JSON nests arrays and objects deeper than 32 levels");
  }
  SUBCASE("a 100-character hash") {
    j["trace_sha256"] = std::string(100, 'a');
    write_resealed(path, j);
    expect_refused(check(), path, "trace_sha256 is a string of 100 bytes, over this field's limit of 64");
  }
  SUBCASE("a rational of 5,000 digits") {
    j["eps"] = std::string(5000, '7');
    write_resealed(path, j);
    expect_refused(check(), path, "eps is a string of 5000 bytes, over this field's limit of 1024");
  }
  SUBCASE("a 1 MB detail") {
    j["obligations"][0]["detail"] = std::string(1 << 20, 'd');
    write_resealed(path, j);
    expect_refused(check(), path, "detail is a string of 1048576 bytes, over this field's limit of 65536");
  }
  SUBCASE("an obligation name with a newline: the rejection stays one line") {
    j["obligations"][0]["name"] = "layer0\nsufficiency";
    write_resealed(path, j);
    expect_refused(check(), path, "layer0\\x0asufficiency");
  }
  SUBCASE("a FIFO, /dev/zero, a directory") {
    REQUIRE(::mkfifo(path.c_str(), 0600) == 0);
    expect_refused(check(), path, "is not a regular file");
    expect_refused(run("check /dev/zero"), "/dev/zero", "is not a regular file");
    expect_refused(run("check " + quote(dir.path())), dir.path(), "is not a regular file");
  }
  SUBCASE("a (sparse) file one byte over the size limit") {
    write_file(path, "{}");
    fs::resize_file(path, hnf::proofs::kMaxCertificateBytes + 1);
    expect_refused(check(), path, "over the limit of 1073741824 bytes");
  }
}

TEST_CASE("report and gate judge a rejected certificate of any shape: exit 3 and 1, never an internal error") {
  TempDir dir;
  const auto cert = dir / "c.json";
  const auto policy = dir / "policy.json";
  write_file(policy, "{}");
  struct Case {
    const char* what;
    void (*edit)(Json&);
  };
  const Case cases[] = {
      {"2^62 layers (the heatmap would size 2^62 rows)", [](Json& j) { j["map"]["layers"] = std::int64_t{1} << 62; }},
      {"head_dim 2^62 (bits per element would overflow)", [](Json& j) { j["map"]["head_dim"] = std::int64_t{1} << 62; }},
      {"an entry with fewer value formats than key formats", [](Json& j) { j["map"]["entries"][0]["values"].erase(1); }},
      {"an entry for layer 7 of 1", [](Json& j) { j["map"]["entries"][0]["layer"] = 7; }},
      {"block 0", [](Json& j) { j["map"]["block"] = 0; }},
      {"a necessity budget of 0 (the obstruction divides by it)", [](Json& j) { j["obligations"][1]["budget"] = "0"; }},
      {"a composition whose lists disagree in length", [](Json& j) { j["obligations"][2]["lipschitz"] = Json::array(); }},
      {"a row index past the rows", [](Json& j) { j["obligations"][1]["below"] = {999999}; }},
  };
  for (const auto& c : cases) {
    CAPTURE(c.what);
    Json j = tiny_certificate_json();
    REQUIRE(j["obligations"].size() == 3);
    c.edit(j);
    write_resealed(cert, j);
    const Run report = run("report " + quote(cert) + " --md " + quote(dir / "r.md") + " --html " +
                                  quote(dir / "r.html") + " --unattested");
    CHECK_MESSAGE(report.exit_code == 3, report.err);
    CHECK(contains(hnf::testing::read_file(dir / "r.md"), "REJECTED"));
    const Run gate = run("gate --policy " + quote(policy) + " " + quote(cert) + " --junit " + quote(dir / "j.xml"));
    CHECK_MESSAGE(gate.exit_code == 1, gate.err);
    const Run check = run("check " + quote(cert));
    CHECK_MESSAGE(check.exit_code == 3, check.err);
    CHECK(line_count(check.err) == 1);
  }
}

TEST_CASE("gate policy: exponent-heavy numbers, integers beyond int64, nesting, long strings") {
  TempDir dir;
  const auto cert = dir / "c.json";
  write_resealed(cert, tiny_certificate_json());
  const auto policy = dir / "policy.json";
  const fs::path junit = dir / "junit.xml", summary = dir / "summary.md";
  const auto gate = [&](const std::string& policy_text) {
    write_file(policy, policy_text);
    return run("gate --policy " + quote(policy) + " " + quote(cert) + " --junit " + quote(junit) + " --summary " +
                      quote(summary));
  };
  expect_refused(gate(R"({"min_compression": 1e999})"), policy, "has a number beyond the range of a double", {junit, summary});
  expect_refused(gate(R"({"required_scope": {"min_tokens": 18446744073709551615}})"), policy,
                 "min_tokens is not a non-negative integer", {junit, summary});
  expect_refused(gate(R"({"required_scope": {"min_tokens": 1e300}})"), policy, "min_tokens is not a non-negative integer",
                 {junit, summary});
  expect_refused(gate(deeply_nested("allowed_formats", kDeep)), policy, "nests arrays and objects deeper than 32 levels",
                 {junit, summary});
  expect_refused(gate(R"({"max_eps": ")" + std::string(100'000, '1') + R"("})"), policy,
                 "max_eps is a string of 100000 characters, over the limit of 64", {junit, summary});
  fs::remove(policy);
  REQUIRE(::mkfifo(policy.c_str(), 0600) == 0);
  expect_refused(run("gate --policy " + quote(policy) + " " + quote(cert) + " --junit " + quote(junit)), policy,
                 "is not a regular file", {junit});
}

TEST_CASE("report --eval: a token count beyond int64, numbers beyond a double, nesting, long strings") {
  TempDir dir;
  const auto cert = dir / "c.json";
  const Json c = tiny_certificate_json();
  write_resealed(cert, c);
  const auto eval = dir / "eval.json";
  const fs::path md = dir / "report.md";
  Json e = {{"text", "t.txt"},
            {"tokens", 100},
            {"perplexity", 10.0},
            {"cache",
             {{"map_sha256", c["map_sha256"]}, {"perplexity", 10.5}, {"mean_kl", 0.01}, {"top1_agreement", 0.99},
              {"bits_per_element", 5.0}}}};
  const auto report = [&](const std::string& eval_text) {
    write_file(eval, eval_text);
    return run("report " + quote(cert) + " --eval " + quote(eval) + " --md " + quote(md) + " --unattested");
  };
  SUBCASE("tokens 1e300 (a double cast to int64 would be undefined)") {
    e["tokens"] = 1e300;
    expect_refused(report(e.dump()), eval, "tokens is not a non-negative integer", {md});
  }
  SUBCASE("tokens 2^64 - 1") {
    e["tokens"] = 18446744073709551615ULL;
    expect_refused(report(e.dump()), eval, "tokens is not a non-negative integer", {md});
  }
  SUBCASE("perplexity 1e999") {
    e["perplexity"] = 12345.5;
    std::string text = e.dump();
    text.replace(text.find("12345.5"), 7, "1e999");
    expect_refused(report(text), eval, "has a number beyond the range of a double", {md});
  }
  SUBCASE("nesting 100,000 deep") {
    expect_refused(report(deeply_nested("cache", kDeep)), eval, "nests arrays and objects deeper than 32 levels", {md});
  }
  SUBCASE("a text path of 100,000 bytes") {
    e["text"] = std::string(100'000, 'p');
    expect_refused(report(e.dump()), eval, "text is a string of 100000 bytes, longer than a path", {md});
  }
}

TEST_CASE("eval --model: a bad config.json, weights that overflow or disagree with it") {
  TempDir dir;
  const auto model = dir / "model";
  fs::create_directories(model);
  const auto config = model / "config.json";
  const auto text = dir / "t.txt";
  write_file(text, "hello world\n");
  const fs::path out = dir / "eval.json";
  const auto eval = [&] {
    return run("eval --model " + quote(model) + " --text " + quote(text) + " --json-out " + quote(out));
  };
  hnf::testing::TinyLlama spec;
  const auto config_with = [&](const char* field, const Json& value) {
    hnf::testing::TinyLlama s = spec;
    s.config_overrides[field] = value;
    hnf::testing::write_tiny_llama_config(model, s);
  };
  SUBCASE("hidden_size 2^32 (beyond the int32 sizes are held in)") {
    config_with("hidden_size", 4294967296LL);
    expect_refused(eval(), config, "field \"hidden_size\" is too large: 4294967296", {out});
  }
  SUBCASE("num_attention_heads 2^64 - 1") {
    config_with("num_attention_heads", 18446744073709551615ULL);
    expect_refused(eval(), config, "field \"num_attention_heads\" is too large", {out});
  }
  SUBCASE("a negative layer count") {
    config_with("num_hidden_layers", -3);
    expect_refused(eval(), config, "field \"num_hidden_layers\" must be a positive integer, got -3", {out});
  }
  SUBCASE("rms_norm_eps 1e999 and 1e-999") {
    config_with("rms_norm_eps", 12345.5);
    const std::string valid = hnf::testing::read_file(config);
    std::string text_999 = valid;
    write_file(config, text_999.replace(text_999.find("12345.5"), 7, "1e999"));
    expect_refused(eval(), config, "has a number beyond the range of a double", {out});
    std::string text_tiny = valid;
    write_file(config, text_tiny.replace(text_tiny.find("12345.5"), 7, "1e-999"));  // reads as 0
    expect_refused(eval(), config, "field \"rms_norm_eps\" must be a positive number", {out});
  }
  SUBCASE("nesting 100,000 deep") {
    write_file(config, deeply_nested("hidden_size", kDeep));
    expect_refused(eval(), config, "nests arrays and objects deeper than 32 levels", {out});
  }
  SUBCASE("config.json is a FIFO") {
    REQUIRE(::mkfifo(config.c_str(), 0600) == 0);
    expect_refused(eval(), config, "is not a regular file", {out});
  }
  SUBCASE("model.safetensors whose size overflows") {
    hnf::testing::write_tiny_llama_config(model, spec);
    write_file(model / "model.safetensors",
               raw_safetensors(R"({"model.embed_tokens.weight":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,0]}})", ""));
    expect_refused(eval(), model / "model.safetensors", "needs more than 2^63 - 1 bytes", {out});
  }
  SUBCASE("a weight whose shape disagrees with config.json") {
    spec.reshape = [](const std::string& name, std::vector<std::int64_t> shape) {
      if (name == "model.layers.1.self_attn.k_proj.weight") shape[0] += 1;
      return shape;
    };
    (void)hnf::testing::write_tiny_llama(model, spec);
    expect_refused(eval(), model / "model.safetensors",
                   "tensor \"model.layers.1.self_attn.k_proj.weight\" has shape [33, 64], expected [32, 64]", {out});
  }
}

TEST_CASE("tokenize: a garbage, truncated or endless tokenizer.model") {
  TempDir dir;
  const auto tokenizer = dir / "tokenizer.model";
  const auto text = dir / "t.txt";
  write_file(text, "hello\n");
  const fs::path out = dir / "tokens.safetensors";
  const auto tokenize = [&](const fs::path& model) {
    return run("tokenize --tokenizer " + quote(model) + " --text " + quote(text) + " --out " + quote(out));
  };
  write_file(tokenizer, "this is not a protobuf \xff\xff\xff\x01\x02");
  expect_refused(tokenize(tokenizer), tokenizer, "not a SentencePiece model", {out});
  const std::string real = hnf::testing::read_file(kSource / "models" / "hnf-llama-4m" / "tokenizer.model");
  REQUIRE(real.size() > 1000);
  write_file(tokenizer, real.substr(0, real.size() / 2));
  expect_refused(tokenize(tokenizer), tokenizer, "not a SentencePiece model", {out});
  expect_refused(tokenize("/dev/zero"), "/dev/zero", "is not a regular file", {out});
  write_file(tokenizer, "x");
  fs::resize_file(tokenizer, hnf::runtime::kMaxTokenizerBytes + 1);
  expect_refused(tokenize(tokenizer), tokenizer, "over the limit of 67108864 bytes", {out});
}
