// The compact row stores of a long-context analysis (kv_rows.h) against what they replace: the
// trace's values read one by one, quantize_block's dequantized values, and the analysis JSON
// written in pieces against the document built whole.
#include <doctest/doctest.h>

#include <random>
#include <string>
#include <vector>

#include "hnf/analysis/analysis_report.h"
#include "hnf/analysis/analyze.h"
#include "hnf/analysis/kv_rows.h"
#include "hnf/analysis/synthetic_trace.h"
#include "hnf/analysis/trace.h"
#include "hnf/proofs/error.h"
#include "hnf/proofs/format.h"
#include "test_files.h"

namespace analysis = hnf::analysis;
namespace proofs = hnf::proofs;

TEST_CASE("StoredRows gives back every element of the trace exactly, for F32, F16 and BF16") {
  hnf::testing::TempDir dir;
  for (const proofs::Dtype dtype : {proofs::Dtype::kF32, proofs::Dtype::kF16, proofs::Dtype::kBF16}) {
    CAPTURE(std::string(proofs::dtype_name(dtype)));
    analysis::SyntheticTraceSpec spec;
    spec.num_layers = 1;
    spec.num_tokens = 150;  // not a multiple of kReadRows
    spec.dtype = dtype;
    const auto path = dir / ("t-" + std::string(proofs::dtype_name(dtype)) + ".safetensors");
    analysis::write_synthetic_trace(path, spec);
    const auto trace = analysis::Trace::open(path);
    const auto& k = *trace.layers()[0].k;
    const analysis::StoredRows rows(trace.file(), path.string(), k, 1, 0, spec.num_tokens);
    REQUIRE(rows.rows() == 150);
    REQUIRE(rows.dim() == 64);
    // Rows 20..149 of kv head 1, in an odd range that crosses read chunks.
    std::vector<double> out(130 * 64);
    rows.read(20, 130, out.data());
    const auto bytes = trace.file().bytes(k);
    const std::uint64_t head_start = 150 * 64;
    for (std::size_t i = 0; i < out.size(); ++i)
      REQUIRE(out[i] == static_cast<double>(proofs::load_float(dtype, bytes.data(), head_start + 20 * 64 + i)));
    std::vector<float> floats(3 * 64);
    rows.read_floats(147, 3, floats.data());
    for (std::size_t i = 0; i < floats.size(); ++i)
      REQUIRE(floats[i] == proofs::load_float(dtype, bytes.data(), head_start + 147 * 64 + i));
    CHECK_THROWS_AS(rows.read(149, 2, out.data()), proofs::Error);
  }
}

TEST_CASE("QuantizedRows decodes every unit to quantize_block's values, whatever the mix of formats") {
  std::mt19937_64 rng(5);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  const std::size_t d = 64, block = 16, tokens = 16 * 7 + 5;  // a short last unit
  std::vector<float> x(tokens * d);
  for (float& v : x) v = normal(rng);
  x[40 * d + 3] = 900.0f;  // an outlier
  analysis::QuantizedRows q(tokens, d, block);
  REQUIRE(q.units() == 8);
  const auto vocabulary = proofs::format_vocabulary(static_cast<int>(d));
  std::vector<proofs::Format> chosen(q.units());
  // Every format of the vocabulary on some unit, twice over, then reassigned: stale high bytes
  // or groups of an earlier format must not leak into the new one.
  for (int round = 0; round < 3; ++round) {
    for (std::size_t u = 0; u < q.units(); ++u) {
      chosen[u] = vocabulary[(u * 5 + static_cast<std::size_t>(round) * 7) % vocabulary.size()];
      const std::size_t first = u * block, rows = std::min(block, tokens - first);
      q.assign(u, chosen[u], std::span<const float>(x).subspan(first * d, rows * d));
      CHECK(q.holds(u, chosen[u]));
    }
    std::vector<double> all(tokens * d);
    q.read(0, tokens, all.data());
    for (std::size_t u = 0; u < q.units(); ++u) {
      CAPTURE(proofs::format_name(chosen[u]));
      const std::size_t first = u * block, rows = std::min(block, tokens - first);
      std::vector<double> x_hat(rows * d), radius(rows * d);
      proofs::quantize_block(chosen[u], std::span<const float>(x).subspan(first * d, rows * d), rows, d, x_hat, radius);
      for (std::size_t i = 0; i < rows * d; ++i) REQUIRE(all[first * d + i] == x_hat[i]);
    }
    // A range starting inside a unit reads the same values.
    std::vector<double> part(30 * d);
    q.read(21, 30, part.data());
    for (std::size_t i = 0; i < part.size(); ++i) REQUIRE(part[i] == all[21 * d + i]);
  }
  CHECK_FALSE(q.holds(0, proofs::Format{proofs::Encoding::kInt2, proofs::GroupAxis::kTokens, 64}));
  analysis::QuantizedRows fresh(tokens, d, block);
  std::vector<double> out(d);
  CHECK_THROWS_AS(fresh.read(0, 1, out.data()), proofs::Error);  // never assigned
}

TEST_CASE("write_analysis_json writes, in pieces, the document analysis_to_json builds") {
  hnf::testing::TempDir dir;
  analysis::SyntheticTraceSpec spec;
  spec.num_tokens = 96;
  spec.query_stride = 4;
  const auto path = dir / "t.safetensors";
  analysis::write_synthetic_trace(path, spec);
  analysis::AnalysisOptions o;
  o.eps = 0.05;
  const auto r = analysis::analyze_trace(path.string(), o);
  std::string text;
  std::size_t pieces = 0;
  analysis::write_analysis_json(r, [&](std::string_view piece) {
    text += piece;
    ++pieces;
  });
  CHECK(pieces > 10);
  REQUIRE(text.back() == '\n');
  const auto parsed = nlohmann::json::parse(text);
  CHECK(parsed == analysis::analysis_to_json(r));
  CHECK(parsed["heads"][0]["positions"]["kappa"].size() == 96);
  CHECK(!analysis::analysis_to_json(r, false)["heads"][0].contains("positions"));
}
