// The committed reference model through the CLI: trace capture (and its round trip against the
// runner), cached decode against the uncached forward, eval, and bad model/text inputs.
#include <doctest/doctest.h>

#include <cmath>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "hnf/analysis/trace.h"
#include "hnf/proofs/certificate.h"
#include "hnf/proofs/sha256.h"
#include "hnf/runtime/dense_kv_cache.h"
#include "hnf/runtime/model_dir.h"
#include "fixture_certificate.h"
#include "run_cli.h"
#include "test_files.h"
#include "tiny_llama.h"

using hnf::testing::contains;
using hnf::testing::hnf_verify;
using hnf::testing::quote;
using Run = hnf::testing::CliRun;
using hnf::testing::read_file;
using hnf::testing::TempDir;
using hnf::testing::write_file;

namespace {

const std::filesystem::path kModel = std::filesystem::path(HNF_SOURCE_DIR) / "models" / "hnf-llama-4m";


// A few paragraphs of plain English prose, enough for a few hundred tokens.
std::string prose() {
  std::string text;
  for (int i = 0; i < 12; ++i) {
    text += "The river ran through the old town , and the people who lived along its banks built mills "
            "and bridges . In the spring of " + std::to_string(1850 + i) +
            " the water rose higher than anyone could remember .\n";
  }
  return text;
}

// Records every layer's tensors as the runner computes them.
struct Recorder final : hnf::runtime::LayerObserver {
  std::vector<std::vector<float>> q, k_pre, k, v;
  std::int64_t q_width = 0, kv_width = 0;
  void on_layer(int, const float* qs, const float* kp, const float* ks, const float* vs, std::int64_t n,
                std::int64_t) override {
    q.emplace_back(qs, qs + n * q_width);
    k_pre.emplace_back(kp, kp + n * kv_width);
    k.emplace_back(ks, ks + n * kv_width);
    v.emplace_back(vs, vs + n * kv_width);
  }
};

bool same_floats(const hnf::analysis::Trace& trace, const hnf::proofs::TensorInfo& t, const std::vector<float>& expected) {
  const auto bytes = trace.file().bytes(t);
  return bytes.size() == expected.size() * 4 && std::memcmp(bytes.data(), expected.data(), bytes.size()) == 0;
}

}  // namespace

TEST_CASE("trace records exactly what the runner computes, with provenance") {
  TempDir dir;
  write_file(dir / "text.txt", prose());
  const auto out = dir / "trace.safetensors";
  const Run run = hnf_verify("trace --model " + quote(kModel) + " --text " + quote(dir / "text.txt") +
                             " --tokens 96 --out " + quote(out));
  REQUIRE_MESSAGE(run.exit_code == 0, run.err);
  CHECK(hnf_verify("inspect --strict " + quote(out)).exit_code == 0);

  const auto trace = hnf::analysis::Trace::open(out);
  const auto model = hnf::runtime::load_model_dir(kModel);
  const auto shape = model.model.cache_shape();
  CHECK(trace.shape().num_layers == shape.num_layers);
  CHECK(trace.shape().num_heads == shape.num_heads);
  CHECK(trace.shape().num_kv_heads == shape.num_kv_heads);
  CHECK(trace.shape().head_dim == shape.head_dim);
  CHECK(trace.shape().num_tokens == 96);
  CHECK(trace.metadata().at("model_sha256") == hnf::proofs::sha256_file_hex(kModel / "model.safetensors"));
  CHECK(trace.metadata().at("text_sha256") == hnf::proofs::sha256_file_hex(dir / "text.txt"));
  CHECK(trace.metadata().at("rope") == "llama");

  std::vector<std::int32_t> input{model.tokenizer.bos_id()};
  const auto ids = model.tokenizer.encode(prose(), "prose");
  input.insert(input.end(), ids.begin(), ids.begin() + 95);
  Recorder recorder;
  recorder.q_width = shape.num_heads * shape.head_dim;
  recorder.kv_width = shape.num_kv_heads * shape.head_dim;
  hnf::runtime::DenseKvCache cache(shape, 96);
  model.model.forward(input, cache, nullptr, &recorder);
  for (std::size_t l = 0; l < trace.layers().size(); ++l) {
    CAPTURE(l);
    const auto& layer = trace.layers()[l];
    CHECK(same_floats(trace, *layer.q, recorder.q[l]));
    CHECK(same_floats(trace, *layer.k, recorder.k[l]));
    CHECK(same_floats(trace, *layer.k_pre_rope, recorder.k_pre[l]));
    CHECK(same_floats(trace, *layer.v, recorder.v[l]));
  }
}

TEST_CASE("cached token-by-token decode matches the uncached forward on the committed model") {
  const auto model = hnf::runtime::load_model_dir(kModel);
  auto input = model.tokenizer.encode(prose(), "prose");
  input.resize(48);
  const auto vocab = static_cast<std::size_t>(model.model.config().vocab_size);
  std::vector<float> full(input.size() * vocab);
  hnf::runtime::DenseKvCache all(model.model.cache_shape(), 48);
  model.model.forward(input, all, full.data());
  hnf::runtime::DenseKvCache step(model.model.cache_shape(), 48);
  std::vector<float> row(vocab);
  double worst = 0.0;
  for (std::size_t t = 0; t < input.size(); ++t) {
    model.model.forward(std::span(input).subspan(t, 1), step, row.data());
    for (std::size_t i = 0; i < vocab; ++i) worst = std::max(worst, std::fabs(static_cast<double>(row[i]) - full[t * vocab + i]));
  }
  CHECK(worst <= 1e-4);
}

TEST_CASE("eval prints perplexity, bits per byte and the unigram baseline") {
  TempDir dir;
  write_file(dir / "text.txt", prose());
  const Run run = hnf_verify("eval --json --ctx 128 --stride 64 --model " + quote(kModel) + " --text " + quote(dir / "text.txt"));
  REQUIRE_MESSAGE(run.exit_code == 0, run.err);
  const auto j = nlohmann::json::parse(run.out);
  CHECK(j["tokens"].get<int>() > 200);
  CHECK(j["windows"].get<int>() > 1);
  CHECK(j["perplexity"].get<double>() > 1.0);
  CHECK(j["bits_per_byte"].get<double>() > 0.0);
  // A trained model beats even the unigram fitted on the evaluated text itself.
  CHECK(j["unigram_perplexity"].get<double>() > j["perplexity"].get<double>());
  CHECK(j["bytes"].get<double>() == static_cast<double>(prose().size()));
}

TEST_CASE("bad model folders and texts exit 3 with one line naming the file") {
  TempDir dir;
  write_file(dir / "text.txt", prose());
  SUBCASE("config field missing") {
    std::filesystem::copy(kModel, dir / "m");
    auto config = nlohmann::json::parse(read_file(dir / "m" / "config.json"));
    config.erase("hidden_size");
    write_file(dir / "m" / "config.json", config.dump());
    const Run run = hnf_verify("eval --model " + quote(dir / "m") + " --text " + quote(dir / "text.txt"));
    CHECK(run.exit_code == 3);
    CHECK(contains(run.err, "config.json: "));
    CHECK(contains(run.err, "hidden_size"));
  }
  SUBCASE("tokenizer does not match vocab_size") {
    hnf::testing::write_tiny_llama(dir / "tiny", hnf::testing::TinyLlama{});  // vocab 50
    std::filesystem::copy_file(kModel / "tokenizer.model", dir / "tiny" / "tokenizer.model");
    const Run run = hnf_verify("trace --model " + quote(dir / "tiny") + " --text " + quote(dir / "text.txt") +
                               " --tokens 8 --out " + quote(dir / "t.safetensors"));
    CHECK(run.exit_code == 3);
    CHECK(contains(run.err, "tokenizer.model: tokenizer has 4096 pieces but config.json vocab_size is 50"));
    CHECK(!std::filesystem::exists(dir / "t.safetensors"));
  }
  SUBCASE("empty text") {
    write_file(dir / "empty.txt", "");
    const Run run = hnf_verify("eval --model " + quote(kModel) + " --text " + quote(dir / "empty.txt"));
    CHECK(run.exit_code == 3);
    CHECK(contains(run.err, "empty.txt: text is empty"));
  }
  SUBCASE("non-UTF-8 text") {
    write_file(dir / "latin1.txt", "caf\xe9 au lait\n");
    const Run run = hnf_verify("eval --model " + quote(kModel) + " --text " + quote(dir / "latin1.txt"));
    CHECK(run.exit_code == 3);
    CHECK(contains(run.err, "latin1.txt: "));
  }
  SUBCASE("text shorter than the trace") {
    const Run run = hnf_verify("trace --model " + quote(kModel) + " --text " + quote(dir / "text.txt") +
                               " --tokens 100000 --out " + quote(dir / "t.safetensors"));
    CHECK(run.exit_code == 3);
    CHECK(contains(run.err, "fewer than the 99999 requested after BOS"));
    CHECK(!std::filesystem::exists(dir / "t.safetensors"));
  }
}

namespace {
const std::filesystem::path kFixtureCert = std::filesystem::path(HNF_SOURCE_DIR) / "tests" / "fixtures" / "hnf-llama-4m-128.cert.json";
const std::filesystem::path kPassage = std::filesystem::path(HNF_SOURCE_DIR) / "examples" / "wikitext-2-test-passage.txt";
// The fixture's attestation and the public key it verifies under (tests/fixtures/regenerate.sh).
const std::string kAttested =
    " --attestation " + quote(std::filesystem::path(HNF_SOURCE_DIR) / "tests/fixtures/hnf-llama-4m-128.attestation.json") +
    " --public-key " + quote(std::filesystem::path(HNF_SOURCE_DIR) / "tests/fixtures/fixture.pub");
}  // namespace

TEST_CASE("eval --cache runs the certified map's cache next to fp32: perplexity, KL, top-1, bytes per element") {
  TempDir dir;
  // The certificate's own trace (bit-reproducible: the same model, text and length).
  const Run trace = hnf_verify("trace --model " + quote(kModel) + " --text " + quote(kPassage) + " --tokens 128 --out " +
                               quote(dir / "trace.safetensors"));
  REQUIRE_MESSAGE(trace.exit_code == 0, trace.err);
  const Run run = hnf_verify("eval --json --ctx 128 --stride 64 --max-tokens 300 --model " + quote(kModel) + " --text " +
                             quote(kPassage) + " --cache " + quote(kFixtureCert) + kAttested + " --trace " +
                             quote(dir / "trace.safetensors") + " --bounds");
  REQUIRE_MESSAGE(run.exit_code == 0, run.err);
  const auto j = nlohmann::json::parse(run.out);
  const auto& c = j.at("cache");
  CHECK(c["witnesses"] == "attested");
  CHECK(contains(run.err, "model compared, trace compared, witnesses attested"));
  CHECK(c["perplexity"].get<double>() > 1.0);
  CHECK(c["mean_kl"].get<double>() > 0.0);  // the map quantizes ...
  CHECK(c["mean_kl"].get<double>() < 0.5);  // ... and the model still predicts nearly the same
  CHECK(c["top1_agreement"].get<double>() > 0.5);
  CHECK(c["top1_agreement"].get<double>() <= 1.0);
  // Measured on the stored bytes; the map's figure counts a byte of map metadata per block too.
  CHECK(c["bits_per_element"].get<double>() > 2.0);
  CHECK(c["bits_per_element"].get<double>() < 8.5);
  CHECK(c["bytes_per_element"].get<double>() == doctest::Approx(c["bits_per_element"].get<double>() / 8.0));
  CHECK(c["decode_bound"]["rows"].get<std::int64_t>() == c["attention_rows"].get<std::int64_t>());
  CHECK(c["decode_bound"]["max"].get<double>() > 0.0);
  // The first window reads the traced tokens at the traced positions: the same queries, inside
  // S2; later windows put other tokens there, and positions past the trace are outside.
  CHECK(c["s2"]["outside"].get<std::int64_t>() > 0);
  CHECK(c["s2"]["outside"].get<std::int64_t>() < c["s2"]["rows"].get<std::int64_t>());

  // --json-out: the text on stdout and the same JSON in a file, which report --eval attaches
  // (what scripts/main.sh does).
  const Run text = hnf_verify("eval --ctx 128 --stride 64 --max-tokens 300 --model " + quote(kModel) + " --text " +
                              quote(kPassage) + " --cache " + quote(kFixtureCert) + kAttested + " --json-out " +
                              quote(dir / "eval.json"));
  REQUIRE_MESSAGE(text.exit_code == 0, text.err);
  CHECK(contains(text.out, "KL vs fp32 cache"));
  const auto written = nlohmann::json::parse(read_file(dir / "eval.json"));
  CHECK(written["cache"]["perplexity"].get<double>() == doctest::Approx(c["perplexity"].get<double>()).epsilon(1e-12));
  CHECK(written["cache"]["map_sha256"] == c["map_sha256"]);
  const Run report = hnf_verify("report " + quote(kFixtureCert) + " --model " + quote(kModel) + kAttested + " --eval " +
                                quote(dir / "eval.json") + " --md " + quote(dir / "report.md"));
  REQUIRE_MESSAGE(report.exit_code == 0, report.err);
  CHECK(contains(read_file(dir / "report.md"), "| mean KL vs fp32 (nats/token) |"));
}

TEST_CASE("eval --cache refuses certificates that do not belong to the model or trace") {
  TempDir dir;
  SUBCASE("another trace") {
    const Run trace = hnf_verify("trace --model " + quote(kModel) + " --text " + quote(kPassage) + " --tokens 64 --out " +
                                 quote(dir / "other.safetensors"));
    REQUIRE(trace.exit_code == 0);
    const Run run = hnf_verify("eval --max-tokens 100 --ctx 64 --stride 32 --model " + quote(kModel) + " --text " +
                               quote(kPassage) + " --cache " + quote(kFixtureCert) + kAttested + " --trace " +
                               quote(dir / "other.safetensors"));
    CHECK(run.exit_code == 3);
    CHECK(contains(run.err, "hnf-llama-4m-128.cert.json: rejected: "));
    CHECK(contains(run.err, "trace"));
  }
  SUBCASE("another model") {
    std::filesystem::copy(kModel, dir / "m");
    auto bytes = read_file(dir / "m" / "model.safetensors");
    bytes[bytes.size() - 1] = static_cast<char>(bytes[bytes.size() - 1] ^ 1);  // one bit of one weight
    write_file(dir / "m" / "model.safetensors", bytes);
    const Run run = hnf_verify("eval --max-tokens 100 --ctx 64 --stride 32 --model " + quote(dir / "m") + " --text " +
                               quote(kPassage) + " --cache " + quote(kFixtureCert) + kAttested);
    CHECK(run.exit_code == 3);
    CHECK(contains(run.err, "rejected: "));
    CHECK(contains(run.err, "model"));
  }
  SUBCASE("a tampered map") {
    auto cert = nlohmann::json::parse(read_file(kFixtureCert));
    cert["map"]["entries"][0]["keys"][0] = "int2-d64";
    write_file(dir / "c.json", cert.dump());
    const Run run = hnf_verify("eval --max-tokens 100 --ctx 64 --stride 32 --model " + quote(kModel) + " --text " +
                               quote(kPassage) + " --cache " + quote(dir / "c.json"));
    CHECK(run.exit_code == 3);
    CHECK(contains(run.err, "c.json: certificate_sha256 does not match the content"));
  }
  SUBCASE("a forged certificate: a witness lowered and the certificate hash recomputed") {
    auto c = hnf::proofs::certificate_from_json(read_file(kFixtureCert), kFixtureCert.string());
    c.obligations.front().sufficiency.front().bound = "0";
    write_file(dir / "forged.json", hnf::proofs::certificate_to_json(c));
    const std::string eval = "eval --max-tokens 100 --ctx 64 --stride 32 --model " + quote(kModel) + " --text " +
                             quote(kPassage) + " --cache " + quote(dir / "forged.json");
    // By default: refused, the witnesses being neither re-derived nor attested.
    Run run = hnf_verify(eval);
    CHECK(run.exit_code == 3);
    CHECK(contains(run.err, "forged.json: its witnesses were neither re-derived nor attested"));
    // With the fixture's attestation: it attests another claim.
    run = hnf_verify(eval + kAttested);
    CHECK(run.exit_code == 3);
    CHECK(contains(run.err, "forged.json: rejected: the attestation is for another certificate"));
    // The named opt-out runs it, and says so.
    run = hnf_verify(eval + " --unattested");
    CHECK(run.exit_code == 0);
    CHECK(contains(run.out, "witnesses         NOT verified (--unattested)"));
  }
  SUBCASE("--trace without --cache") {
    const Run run = hnf_verify("eval --model " + quote(kModel) + " --text " + quote(kPassage) + " --trace x.safetensors");
    CHECK(run.exit_code == 3);
    CHECK(contains(run.err, "--trace: needs --cache"));
  }
}

TEST_CASE("eval --cache with a policy certificate: token-by-token decode and the guard, measured against a shadow exact copy") {
  const std::string policy_cert = hnf::testing::fixture_path("hnf-llama-4m-128-policy.cert.json");
  const std::string attested = " --attestation " + quote(hnf::testing::fixture_path("hnf-llama-4m-128-policy.attestation.json")) +
                               " --public-key " + quote(hnf::testing::kFixturePublicKey);
  const Run run = hnf_verify("eval --json --ctx 100 --stride 50 --max-tokens 150 --model " + quote(kModel) + " --text " +
                             quote(kPassage) + " --cache " + quote(policy_cert) + attested);
  REQUIRE_MESSAGE(run.exit_code == 0, run.err);
  CHECK(contains(run.err, "certifies a precision policy: token-by-token decode, guard on"));
  const auto j = nlohmann::json::parse(run.out);
  CHECK(j["decode"] == "token by token");
  const auto& g = j.at("cache").at("guard");
  CHECK(g["kind"] == "deterministic");
  CHECK(g["delta"].get<double>() == 0.0);
  // Every attention row of every decode step: windows of 99, 99 and 50 tokens, 4 layers x 4 heads.
  const std::int64_t rows = g["rows"].get<std::int64_t>();
  CHECK(rows == j["cache"]["attention_rows"].get<std::int64_t>());
  CHECK(rows == (99 + 99 + 50) * 16);
  CHECK(g["steps"].get<std::int64_t>() == (99 + 99 + 50) * 4);
  const std::int64_t within = g["within_eps"].get<std::int64_t>();
  CHECK(within >= 0);
  CHECK(within <= rows);
  std::int64_t per_layer = 0, per_layer_within = 0;
  for (const auto& l : g["per_layer"]) {
    per_layer += l["rows"].get<std::int64_t>();
    per_layer_within += l["within_eps"].get<std::int64_t>();
  }
  CHECK(per_layer == rows);
  CHECK(per_layer_within == within);  // the monitor's count and the samples' count agree
  // A sound bound is never below the actual error; rows reading only fp16/bf16 pages are apart.
  const auto& r = g["bound_over_actual"];
  CHECK(r["rows"].get<std::int64_t>() > 100);
  CHECK(r["min"].get<double>() >= 1.0);
  CHECK(r["median"].get<double>() >= r["min"].get<double>());
  CHECK(r["p99"].get<double>() <= r["max"].get<double>());
  CHECK(g["float_only_rows"].get<std::int64_t>() == 0);  // the fixture's sink keys are int8: every row reads an integer page
  CHECK(g["actual_max"].get<double>() > 0.0);
  CHECK(g["bound_max"].get<double>() >= g["actual_max"].get<double>());
  CHECK(g["deterministic"]["within_eps"] == g["within_eps"]);
  CHECK(g["overhead_fraction"].get<double>() > 0.0);

  // The audit report shows the guard per layer, measured from the attached eval JSON.
  TempDir dir;
  write_file(dir / "eval.json", run.out);
  const Run report = hnf_verify("report " + quote(policy_cert) + " --model " + quote(kModel) + attested + " --eval " +
                                quote(dir / "eval.json") + " --md " + quote(dir / "report.md"));
  REQUIRE_MESSAGE(report.exit_code == 0, report.err);
  const std::string md = read_file(dir / "report.md");
  CHECK(contains(md, "## The runtime guard"));
  CHECK(contains(md, "The guard is deterministic"));
  const auto& layer0 = g["per_layer"][0];
  const double measured = 100.0 * static_cast<double>(layer0["within_eps"].get<std::int64_t>()) /
                          static_cast<double>(layer0["rows"].get<std::int64_t>());
  CHECK(contains(md, fmt::format("{:.2f} % of {}", measured, layer0["rows"].get<std::int64_t>())));
}
