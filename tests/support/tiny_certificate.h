// A small, valid, certified certificate shared by the proofs and reports tests.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "hnf/proofs/certificate.h"
#include "hnf/proofs/format.h"

namespace hnf::testing {

inline constexpr std::string_view kTool = "hnf-verify test";

// A small, valid, certified certificate: 1 layer, 1 kv head, 2 query heads, 32 tokens in two
// blocks of 16, recorded queries at 30 and 31, keys int4-d32 then fp16, values int8-d32.
inline proofs::Certificate tiny_certificate() {
  using namespace hnf::proofs;
  Certificate c;
  c.tool_version = std::string(kTool);
  c.model_id = "synthetic";
  c.model_sha256 = "none";
  c.trace_file = "t.safetensors";
  c.trace_sha256 = std::string(64, 'a');
  c.text_sha256 = "none";
  c.map.layers = 1;
  c.map.kv_heads = 1;
  c.map.heads = 2;
  c.map.head_dim = 32;
  c.map.tokens = 32;
  c.map.block = 16;
  c.map.entries.push_back({0, 0, {*parse_format("int4-d32"), *parse_format("fp16")},
                           {*parse_format("int8-d32"), *parse_format("int8-d32")}});
  c.map_sha256 = map_sha256(c.map);
  c.bits_per_element = map_bits_per_element(c.map);
  c.eps = "1/20";
  c.layer_eps = {"1/20"};
  c.scope.query_positions = {30, 31};
  c.scope.heads.push_back({0, 0, "3/2", "1/10", "7", "5"});
  c.scope.assumptions = {"test"};
  Obligation s;
  s.name = "layer0_sufficiency";
  s.kind = ObligationKind::kSufficiency;
  s.layer = 0;
  s.budget = "1/20";
  s.verdict = Verdict::kProved;
  for (std::int64_t h = 0; h < 2; ++h) {
    for (std::int64_t p : {30, 31}) s.sufficiency.push_back({0, h, p, exact_rational(0.01 * static_cast<double>(h + 1))});
  }
  Obligation n;
  n.name = "layer0_necessity";
  n.kind = ObligationKind::kNecessity;
  n.layer = 0;
  n.budget = "1/20";
  n.verdict = Verdict::kDiagnostic;  // Theorem 5.7's figures: never an answer
  n.below_reason = "worst case over a cell";
  // One row per allocation unit (schema 3): the unit's largest kappa D^2. 8 * (1/20) * 4^4 =
  // 102.4 for the int4 block, where position 3 needs more (listed below).
  n.necessity.push_back({0, 3, "200", 4});
  n.necessity.push_back({0, 16, "1/3", 11});
  n.below = {0};
  Obligation comp;
  comp.name = "composition";
  comp.kind = ObligationKind::kComposition;
  comp.layer = -1;
  comp.lipschitz = {"3"};
  comp.injection = {"2"};
  comp.layer_eps = {"1/20"};
  comp.budget = "1/10";  // 2 * 1/20 = 1/10: holds with equality
  comp.verdict = Verdict::kProved;
  c.obligations = {s, n, comp};
  c.verdict = "certified";
  return c;
}

// The exact checker on `c` as written by certificate_to_json (file name "cert.json").
// The tiny certificate's necessity rows as schemas 1 and 2 wrote them: one per position.
inline void use_per_position_necessity(proofs::Certificate& c) {
  auto& n = c.obligations[1];
  n.necessity.clear();
  for (std::int64_t t = 0; t < 32; ++t) n.necessity.push_back({0, t, t == 3 ? "200" : "1/3", t < 16 ? 4 : 11});
  n.below = {3};
}

inline proofs::CheckReport check_written(const proofs::Certificate& c, const proofs::CheckOptions& options = {}) {
  return proofs::check_certificate_text(proofs::certificate_to_json(c), "cert.json", options, kTool);
}

}  // namespace hnf::testing
