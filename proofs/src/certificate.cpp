// Certificate JSON (docs/certificate.md) and the exact checker. Every comparison of the
// checker is done on GMP rationals parsed from the certificate's strings: no floating point
// takes part in a verdict.
#include "hnf/proofs/certificate.h"

#include <gmpxx.h>
#include <mpfr.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "hnf/proofs/error.h"
#include "hnf/proofs/json_limits.h"
#include "hnf/proofs/read_file.h"
#include "hnf/proofs/sha256.h"

namespace hnf::proofs {
namespace {

using Json = nlohmann::json;

// Ranges of the certificate's numbers (docs/hostile-input.md). Counts and indices are any
// non-negative int64 here; the checker judges their meaning (e.g. layers <= 4096).
constexpr std::int64_t kMaxCount = std::numeric_limits<std::int64_t>::max();
// bits_per_element is recomputed from the map by the checker; no format stores more than 64.
constexpr double kMaxBitsPerElement = 64.0;
// solver_ms is informational; 1e15 ms is 30,000 years.
constexpr double kMaxSolverMs = 1e15;

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
}

bool is_sha256_hex(const std::string& s) {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) { return std::isdigit(c) || (c >= 'a' && c <= 'f'); });
}

// Parses a string the caller validated with is_exact_rational.
mpq_class to_mpq(const std::string& text) {
  mpq_class q;
  HNF_ASSERT(q.set_str(text, 10) == 0, "rational validated before parsing");
  q.canonicalize();
  return q;
}

// ---- JSON writing ---------------------------------------------------------------------------

Json map_to_json(const PrecisionMap& map) {
  Json entries = Json::array();
  for (const auto& e : map.entries) {
    Json keys = Json::array(), values = Json::array();
    for (const auto& f : e.key_formats) keys.push_back(format_name(f));
    for (const auto& f : e.value_formats) values.push_back(format_name(f));
    entries.push_back({{"layer", e.layer}, {"kv_head", e.kv_head}, {"keys", keys}, {"values", values}});
  }
  return {{"layers", map.layers}, {"kv_heads", map.kv_heads}, {"heads", map.heads}, {"head_dim", map.head_dim},
          {"tokens", map.tokens}, {"block", map.block}, {"entries", entries}};
}

Json class_formats_json(const ClassFormats& formats) {
  Json out = Json::array();
  for (const auto& f : formats) out.push_back(format_name(f));
  return out;
}

Json policy_to_json(const PrecisionPolicy& p) {
  Json entries = Json::array();
  for (const auto& e : p.entries) {
    entries.push_back({{"layer", e.layer}, {"kv_head", e.kv_head}, {"keys", class_formats_json(e.keys)},
                       {"values", class_formats_json(e.values)}});
  }
  Json j = {{"layers", p.layers},         {"kv_heads", p.kv_heads},         {"heads", p.heads},
            {"head_dim", p.head_dim},     {"page", p.page},                 {"sink_pages", p.sink_pages},
            {"recent_pages", p.recent_pages}, {"entries", entries}};
  // Written only for stochastic rounding (the default, nearest, leaves the policy as it was).
  if (p.rounding == Rounding::kStochastic) {
    j["rounding"] = "stochastic";
    j["calibration_seed"] = p.calibration_seed;
  }
  return j;
}

Json scope_to_json(const Scope& scope) {
  Json heads = Json::array();
  for (const auto& h : scope.heads) {
    heads.push_back({{"layer", h.layer}, {"kv_head", h.kv_head}, {"s2_radius", h.s2_radius}, {"s2_bound", h.s2_bound},
                     {"s3_query_norm", h.s3_query_norm}, {"s3_bound", h.s3_bound}});
  }
  return {{"s1_query_positions", scope.query_positions}, {"heads", heads}, {"assumptions", scope.assumptions}};
}

Json obligation_to_json(const Obligation& o) {
  Json j = {{"name", o.name},         {"kind", obligation_kind_name(o.kind)}, {"layer", o.layer},
            {"budget", o.budget},     {"verdict", verdict_name(o.verdict)},   {"solver_ms", o.solver_ms},
            {"example", o.example},   {"detail", o.detail},                   {"smt_file", o.smt_file}};
  switch (o.kind) {
    case ObligationKind::kSufficiency: {
      Json kv = Json::array(), head = Json::array(), pos = Json::array(), bound = Json::array();
      for (const auto& r : o.sufficiency) {
        kv.push_back(r.kv_head);
        head.push_back(r.head);
        pos.push_back(r.position);
        bound.push_back(r.bound);
      }
      j["rows"] = {{"kv_head", kv}, {"head", head}, {"position", pos}, {"bound", bound}};
      break;
    }
    case ObligationKind::kNecessity: {
      Json kv = Json::array(), pos = Json::array(), kd2 = Json::array(), bits = Json::array();
      for (const auto& r : o.necessity) {
        kv.push_back(r.kv_head);
        pos.push_back(r.position);
        kd2.push_back(r.kappa_d2);
        bits.push_back(r.bits);
      }
      j["rows"] = {{"kv_head", kv}, {"position", pos}, {"kappa_d2", kd2}, {"bits", bits}};
      j["below"] = o.below;
      j["below_reason"] = o.below_reason;
      break;
    }
    case ObligationKind::kComposition:
      j["lipschitz"] = o.lipschitz;
      j["injection"] = o.injection;
      j["layer_eps"] = o.layer_eps;
      break;
  }
  return j;
}

Json certificate_body(const Certificate& c) {
  Json obligations = Json::array();
  for (const auto& o : c.obligations) obligations.push_back(obligation_to_json(o));
  Json body = {{"format", "hnf-certificate"},
          {"version", c.version},
          {"tool_version", c.tool_version},
          {"model_id", c.model_id},
          {"model_sha256", c.model_sha256},
          {"trace_file", c.trace_file},
          {"trace_sha256", c.trace_sha256},
          {"text_sha256", c.text_sha256},
          {"map_sha256", c.map_sha256},
          {"verdict", c.verdict},
          {"eps", c.eps},
          {"layer_eps", c.layer_eps},
          {"bits_per_element", c.bits_per_element},
          {"map", map_to_json(c.map)},
          {"scope", scope_to_json(c.scope)},
          {"obligations", obligations}};
  // Optional (informational): written, and hashed, only when set, so certificates made before
  // the field existed keep their hash.
  if (!c.certify_command.empty()) body["certify_command"] = c.certify_command;
  if (c.policy) {
    body["policy"] = policy_to_json(*c.policy);
    body["policy_sha256"] = c.policy_sha256;
  }
  if (c.prediction) {
    const GuardPrediction& g = *c.prediction;
    body["prediction"] = {{"rule", g.rule},
                          {"kind", g.kind},
                          {"delta", g.delta},
                          {"eps_rel", g.eps_rel},
                          {"output_norm_median", g.output_norm_median},
                          {"calibration_rows", g.calibration_rows},
                          {"calibration_within", g.calibration_within},
                          {"heldout_rows", g.heldout_rows},
                          {"heldout_within", g.heldout_within},
                          {"median_actual", g.median_actual},
                          {"layer_rows", g.layer_rows},
                          {"layer_within", g.layer_within}};
  }
  return body;
}

// The body without what says where or how the certificate was made (certificate_claim_sha256).
Json claim_body(const Certificate& c) {
  Json body = certificate_body(c);
  body.erase("trace_file");
  body.erase("certify_command");
  for (Json& o : body["obligations"]) {
    o.erase("solver_ms");
    o.erase("smt_file");
  }
  return body;
}

std::string body_sha256(const Json& body) {
  const std::string text = body.dump();
  return sha256_hex(std::as_bytes(std::span(text.data(), text.size())));
}

// ---- Strict JSON reading --------------------------------------------------------------------

// Reads one JSON object: every field must be read exactly once, with the expected type;
// finish() rejects fields nobody asked for.
class ObjectReader {
 public:
  ObjectReader(const Json& j, std::string where, const std::string& file) : j_(j), where_(std::move(where)), file_(file) {
    if (!j_.is_object()) fail("", "is not an object");
  }
  [[noreturn]] void fail(const std::string& field, const std::string& problem) const {
    throw bad_input(file_, where_ + (field.empty() ? "" : "." + field) + " " + problem);
  }
  [[nodiscard]] bool has(const std::string& name) const { return j_.contains(name); }
  const Json& field(const std::string& name) {
    const auto it = j_.find(name);
    if (it == j_.end()) fail(name, "is missing");
    seen_.insert(name);
    return *it;
  }
  // Every string has a length limit: its natural one (a hash, a rational, a file name) or
  // kMaxCertificateTextBytes.
  std::string string(const std::string& name, std::size_t max_bytes = kMaxCertificateTextBytes) {
    const Json& v = field(name);
    if (!v.is_string()) fail(name, "is not a string");
    check_length(name, v.get_ref<const std::string&>(), max_bytes);
    return v.get<std::string>();
  }
  std::string rational(const std::string& name) {
    std::string s = string(name, kMaxRationalChars);
    if (!is_exact_rational(s)) fail(name, "'" + s + "' is not an exact rational p or p/q");
    return s;
  }
  // Integers are read within the range of their meaning and type, never narrowed or wrapped:
  // a block of 2^32 + 16 is refused, not read as 16.
  std::int64_t integer(const std::string& name, std::int64_t min, std::int64_t max) {
    const Json& v = field(name);
    const auto value = json_integer(v, min, max);
    if (!value) fail(name, "is " + v.dump() + ", not an integer in " + range_text(min, max));
    return *value;
  }
  double number(const std::string& name, double min, double max) {
    const Json& v = field(name);
    const auto value = json_number(v, min, max);
    if (!value) fail(name, "is " + v.dump() + ", not a number in [" + Json(min).dump() + ", " + Json(max).dump() + "]");
    return *value;
  }
  const Json& array(const std::string& name) {
    const Json& v = field(name);
    if (!v.is_array()) fail(name, "is not an array");
    return v;
  }
  std::vector<std::string> strings(const std::string& name, bool rationals) {
    const std::size_t max_bytes = rationals ? kMaxRationalChars : kMaxCertificateTextBytes;
    std::vector<std::string> out;
    for (const auto& v : array(name)) {
      if (!v.is_string()) fail(name, "has an element that is not a string");
      check_length(name, v.get_ref<const std::string&>(), max_bytes);
      out.push_back(v.get<std::string>());
      if (rationals && !is_exact_rational(out.back())) fail(name, "has '" + out.back() + "', not an exact rational");
    }
    return out;
  }
  std::vector<std::int64_t> integers(const std::string& name, std::int64_t min, std::int64_t max) {
    std::vector<std::int64_t> out;
    for (const auto& v : array(name)) {
      const auto value = json_integer(v, min, max);
      if (!value) {
        fail(name, "has element " + std::to_string(out.size()) + " = " + v.dump() + ", not an integer in " +
                       range_text(min, max));
      }
      out.push_back(*value);
    }
    return out;
  }
  void finish() const {
    for (const auto& [key, value] : j_.items()) {
      if (!seen_.contains(key)) fail(key, "is not a field of this schema");
    }
  }
  const std::string& where() const { return where_; }

 private:
  void check_length(const std::string& name, const std::string& value, std::size_t max_bytes) const {
    if (value.size() > max_bytes) {
      fail(name, "is a string of " + std::to_string(value.size()) + " bytes, over this field's limit of " +
                     std::to_string(max_bytes));
    }
  }
  static std::string range_text(std::int64_t min, std::int64_t max) {
    return "[" + std::to_string(min) + ", " + std::to_string(max) + "]";
  }

  const Json& j_;
  std::string where_;
  const std::string& file_;
  std::set<std::string> seen_;
};

std::vector<Format> parse_formats(ObjectReader& r, const std::string& name) {
  std::vector<Format> out;
  for (const auto& s : r.strings(name, false)) {
    const auto f = parse_format(s);
    if (!f) r.fail(name, "has unknown format '" + s + "'");
    out.push_back(*f);
  }
  return out;
}

PrecisionMap parse_map(const Json& j, const std::string& file) {
  ObjectReader r(j, "map", file);
  PrecisionMap m;
  m.layers = r.integer("layers", 0, kMaxCount);
  m.kv_heads = r.integer("kv_heads", 0, kMaxCount);
  m.heads = r.integer("heads", 0, kMaxCount);
  m.head_dim = r.integer("head_dim", 0, kMaxCount);
  m.tokens = r.integer("tokens", 0, kMaxCount);
  m.block = static_cast<int>(r.integer("block", 0, std::numeric_limits<int>::max()));
  std::size_t index = 0;
  for (const auto& e : r.array("entries")) {
    ObjectReader er(e, "map.entries[" + std::to_string(index++) + "]", file);
    HeadMap h;
    h.layer = er.integer("layer", 0, kMaxCount);
    h.kv_head = er.integer("kv_head", 0, kMaxCount);
    h.key_formats = parse_formats(er, "keys");
    h.value_formats = parse_formats(er, "values");
    er.finish();
    m.entries.push_back(std::move(h));
  }
  r.finish();
  return m;
}

ClassFormats parse_class_formats(ObjectReader& r, const std::string& name) {
  const std::vector<Format> formats = parse_formats(r, name);
  if (formats.size() != kAgeClasses) r.fail(name, "must name three formats (sink, recent, old)");
  return {formats[0], formats[1], formats[2]};
}

PrecisionPolicy parse_policy(const Json& j, const std::string& file) {
  ObjectReader r(j, "policy", file);
  PrecisionPolicy p;
  p.layers = r.integer("layers", 0, kMaxCount);
  p.kv_heads = r.integer("kv_heads", 0, kMaxCount);
  p.heads = r.integer("heads", 0, kMaxCount);
  p.head_dim = r.integer("head_dim", 0, kMaxCount);
  p.page = static_cast<int>(r.integer("page", 0, std::numeric_limits<int>::max()));
  p.sink_pages = r.integer("sink_pages", 0, kMaxCount);
  p.recent_pages = r.integer("recent_pages", 0, kMaxCount);
  std::size_t index = 0;
  for (const auto& e : r.array("entries")) {
    ObjectReader er(e, "policy.entries[" + std::to_string(index++) + "]", file);
    HeadPolicy h;
    h.layer = er.integer("layer", 0, kMaxCount);
    h.kv_head = er.integer("kv_head", 0, kMaxCount);
    h.keys = parse_class_formats(er, "keys");
    h.values = parse_class_formats(er, "values");
    er.finish();
    p.entries.push_back(std::move(h));
  }
  if (r.has("rounding")) {
    if (r.string("rounding") != "stochastic") r.fail("rounding", "is not stochastic (nearest is written by leaving it out)");
    p.rounding = Rounding::kStochastic;
    p.calibration_seed = static_cast<std::uint64_t>(r.integer("calibration_seed", 0, static_cast<std::int64_t>(kSeedLimit) - 1));
  }
  r.finish();
  return p;
}

GuardPrediction parse_prediction(const Json& j, const std::string& file) {
  ObjectReader r(j, "prediction", file);
  GuardPrediction g;
  g.rule = r.string("rule");
  g.kind = r.string("kind");
  if (g.kind != "probabilistic" && g.kind != "deterministic") r.fail("kind", "is probabilistic or deterministic");
  g.delta = r.number("delta", 0.0, 1.0);
  g.eps_rel = r.number("eps_rel", 0.0, 1e300);
  for (const auto& v : r.array("output_norm_median")) {
    const auto value = json_number(v, 0.0, 1e300);
    if (!value) r.fail("output_norm_median", "has an element that is not a nonnegative number");
    g.output_norm_median.push_back(*value);
  }
  g.calibration_rows = r.integer("calibration_rows", 0, kMaxCount);
  g.calibration_within = r.integer("calibration_within", 0, g.calibration_rows);
  g.heldout_rows = r.integer("heldout_rows", 0, kMaxCount);
  g.heldout_within = r.integer("heldout_within", 0, g.heldout_rows);
  g.median_actual = r.number("median_actual", 0.0, 1e300);
  g.layer_rows = r.integers("layer_rows", 0, kMaxCount);
  g.layer_within = r.integers("layer_within", 0, kMaxCount);
  if (g.layer_rows.size() != g.layer_within.size()) r.fail("layer_within", "must have one entry per layer_rows entry");
  for (std::size_t l = 0; l < g.layer_rows.size(); ++l) {
    if (g.layer_within[l] > g.layer_rows[l]) r.fail("layer_within", "has more rows within epsilon than rows");
  }
  r.finish();
  return g;
}

Scope parse_scope(const Json& j, const std::string& file) {
  ObjectReader r(j, "scope", file);
  Scope s;
  s.query_positions = r.integers("s1_query_positions", 0, kMaxCount);
  std::size_t index = 0;
  for (const auto& h : r.array("heads")) {
    ObjectReader hr(h, "scope.heads[" + std::to_string(index++) + "]", file);
    HeadScope hs;
    hs.layer = hr.integer("layer", 0, kMaxCount);
    hs.kv_head = hr.integer("kv_head", 0, kMaxCount);
    hs.s2_radius = hr.rational("s2_radius");
    hs.s2_bound = hr.rational("s2_bound");
    hs.s3_query_norm = hr.rational("s3_query_norm");
    hs.s3_bound = hr.rational("s3_bound");
    hr.finish();
    s.heads.push_back(std::move(hs));
  }
  s.assumptions = r.strings("assumptions", false);
  r.finish();
  return s;
}

ObligationKind parse_kind(ObjectReader& r) {
  const std::string k = r.string("kind");
  if (k == "sufficiency") return ObligationKind::kSufficiency;
  if (k == "necessity") return ObligationKind::kNecessity;
  if (k == "composition") return ObligationKind::kComposition;
  r.fail("kind", "'" + k + "' is not sufficiency, necessity or composition");
}

Verdict parse_verdict(ObjectReader& r) {
  const std::string v = r.string("verdict");
  for (Verdict candidate : {Verdict::kProved, Verdict::kRefuted, Verdict::kUnknown, Verdict::kTimeout,
                            Verdict::kDiagnostic, Verdict::kRecorded}) {
    if (v == verdict_name(candidate)) return candidate;
  }
  r.fail("verdict", "'" + v + "' is not proved, refuted, unknown, timeout, diagnostic or recorded");
}

// Columnar rows: every column must have the same length.
void require_same_length(ObjectReader& r, std::size_t expected, std::size_t actual, const std::string& column) {
  if (actual != expected) r.fail(column, "has " + std::to_string(actual) + " rows, expected " + std::to_string(expected));
}

void parse_sufficiency_rows(ObjectReader& rows, Obligation& o) {
  const auto kv = rows.integers("kv_head", 0, kMaxCount);
  const auto head = rows.integers("head", 0, kMaxCount);
  const auto pos = rows.integers("position", 0, kMaxCount);
  const auto bound = rows.strings("bound", true);
  require_same_length(rows, kv.size(), head.size(), "head");
  require_same_length(rows, kv.size(), pos.size(), "position");
  require_same_length(rows, kv.size(), bound.size(), "bound");
  for (std::size_t i = 0; i < kv.size(); ++i) o.sufficiency.push_back({kv[i], head[i], pos[i], bound[i]});
}

void parse_necessity_rows(ObjectReader& rows, Obligation& o) {
  const auto kv = rows.integers("kv_head", 0, kMaxCount);
  const auto pos = rows.integers("position", 0, kMaxCount);
  const auto kd2 = rows.strings("kappa_d2", true);
  const auto bits = rows.integers("bits", 0, kMaxNecessityBits);
  require_same_length(rows, kv.size(), pos.size(), "position");
  require_same_length(rows, kv.size(), kd2.size(), "kappa_d2");
  require_same_length(rows, kv.size(), bits.size(), "bits");
  for (std::size_t i = 0; i < kv.size(); ++i) {
    o.necessity.push_back({kv[i], pos[i], kd2[i], static_cast<int>(bits[i])});
  }
}

Obligation parse_obligation(const Json& j, std::size_t index, const std::string& file) {
  ObjectReader r(j, "obligations[" + std::to_string(index) + "]", file);
  Obligation o;
  o.name = r.string("name");
  o.kind = parse_kind(r);
  o.layer = r.integer("layer", -1, kMaxCount);  // -1: the composition
  o.budget = r.rational("budget");
  o.verdict = parse_verdict(r);
  o.solver_ms = r.number("solver_ms", 0.0, kMaxSolverMs);
  o.example = r.string("example");
  o.detail = r.string("detail");
  o.smt_file = r.string("smt_file", kMaxFileNameChars);
  if (o.kind == ObligationKind::kComposition) {
    o.lipschitz = r.strings("lipschitz", true);
    o.injection = r.strings("injection", true);
    o.layer_eps = r.strings("layer_eps", true);
  } else {
    ObjectReader rows(r.field("rows"), r.where() + ".rows", file);
    if (o.kind == ObligationKind::kSufficiency) {
      parse_sufficiency_rows(rows, o);
    } else {
      parse_necessity_rows(rows, o);
      o.below = r.integers("below", 0, kMaxCount);
      o.below_reason = r.string("below_reason");
    }
    rows.finish();
  }
  r.finish();
  return o;
}

// ---- The checker's semantic checks ----------------------------------------------------------

class Checker {
 public:
  Checker(const Certificate& c, CheckReport& report) : c_(c), report_(report) {}

  void problem(std::string text) { report_.problems.push_back(std::move(text)); }

  // Checks the map's shape and formats; false when the rest cannot be checked against it.
  bool check_map() {
    const PrecisionMap& m = c_.map;
    // Bounds far above any model keep every product below 2^63 and every loop finite.
    if (m.layers <= 0 || m.kv_heads <= 0 || m.heads <= 0 || m.head_dim <= 0 || m.tokens <= 0 || m.layers > 4096 ||
        m.kv_heads > 4096 || m.heads > 65536 || m.head_dim > 65536 || m.tokens > (std::int64_t{1} << 32)) {
      problem("map: layers, kv_heads (at most 4096), heads, head_dim (at most 65536) and tokens (at most 2^32) must be "
              "positive");
      return false;
    }
    if (m.heads % m.kv_heads != 0) problem("map: heads is not a multiple of kv_heads");
    if (m.block != 16 && m.block != 32 && m.block != 64) {
      problem("map: block must be 16, 32 or 64");
      return false;  // the unit count below divides by it
    }
    if (m.entries.size() != static_cast<std::size_t>(m.layers * m.kv_heads)) {
      problem("map: " + std::to_string(m.entries.size()) + " entries, expected layers x kv_heads");
      return false;
    }
    const auto units = static_cast<std::size_t>((m.tokens + m.block - 1) / m.block);
    const std::size_t problems_before = report_.problems.size();
    for (std::size_t i = 0; i < m.entries.size(); ++i) check_map_entry(m.entries[i], i, units);
    // Entries of the wrong length: nothing below may index them.
    if (report_.problems.size() != problems_before) return false;
    if (map_sha256(m) != c_.map_sha256) problem("map_sha256 does not match the map");
    if (c_.policy) check_policy();
    const double bits = map_bits_per_element(m);
    if (!(std::abs(bits - c_.bits_per_element) <= 1e-9 * bits)) problem("bits_per_element does not match the map");
    return report_.problems.empty();
  }

  // A policy certificate: a well-formed policy of the map's shape, its hash, and the map its
  // expansion at the trace's length (so every map-based check below is the policy's).
  void check_policy() {
    const PrecisionPolicy& p = *c_.policy;
    if (const std::string why = policy_problem(p); !why.empty()) {
      problem("policy: " + why);
      return;
    }
    if (policy_sha256(p) != c_.policy_sha256) problem("policy_sha256 does not match the policy");
    const PrecisionMap& m = c_.map;
    if (p.layers != m.layers || p.kv_heads != m.kv_heads || p.heads != m.heads || p.head_dim != m.head_dim) {
      problem("policy: its shape is not the map's");
      return;
    }
    const PrecisionMap expanded = expand_policy(p, m.tokens);
    if (expanded.block != m.block || map_sha256(expanded) != map_sha256(m)) {
      problem("map is not the policy's expansion at " + std::to_string(m.tokens) + " tokens");
    }
  }

  void check_header(const CheckOptions& options, std::string_view tool_version) {
    for (const auto* hash : {&c_.trace_sha256, &c_.map_sha256}) {
      if (!is_sha256_hex(*hash)) problem("trace_sha256 and map_sha256 must be 64 lowercase hex digits");
    }
    // Synthetic traces have no model: "none".
    if (!is_sha256_hex(c_.model_sha256) && c_.model_sha256 != "none") problem("model_sha256 must be 64 lowercase hex digits or none");
    if (c_.trace_file.find('/') != std::string::npos) problem("trace_file must be a file name without directories");
    if (options.model_dir) {
      const auto actual = sha256_file_hex(*options.model_dir / "model.safetensors");
      if (actual != c_.model_sha256) problem("model: " + (*options.model_dir / "model.safetensors").string() + " has sha256 " + actual + ", the certificate is for " + c_.model_sha256);
      report_.model_compared = true;
    } else {
      report_.notes.push_back("model hash not compared (no --model)");
    }
    if (options.trace) {
      const auto actual = sha256_file_hex(*options.trace);
      if (actual != c_.trace_sha256) problem("trace: " + options.trace->string() + " has sha256 " + actual + ", the certificate is for " + c_.trace_sha256);
      report_.trace_compared = true;
    } else {
      report_.notes.push_back("trace hash not compared (no --trace)");
    }
    // DESIGN.md section 4: the tool version is part of what a certificate is matched on.
    if (c_.tool_version != tool_version) {
      problem("written by " + c_.tool_version + ", this checker is " + std::string(tool_version) +
              ": re-certify with this version");
    }
  }

  void check_budgets() {
    if (c_.layer_eps.size() != static_cast<std::size_t>(c_.map.layers)) {
      problem("layer_eps has " + std::to_string(c_.layer_eps.size()) + " entries, expected one per layer");
      return;
    }
    mpq_class largest = 0;
    for (const auto& e : c_.layer_eps) {
      const mpq_class q = to_mpq(e);
      if (q <= 0) problem("layer_eps: " + e + " is not positive");
      largest = std::max(largest, q);
    }
    if (to_mpq(c_.eps) != largest) problem("eps is not the largest layer epsilon");
  }

  void check_scope() {
    const auto& p = c_.scope.query_positions;
    if (p.empty()) problem("scope.s1_query_positions is empty");
    for (std::size_t i = 0; i < p.size(); ++i) {
      if (p[i] < 0 || p[i] >= c_.map.tokens || (i > 0 && p[i] <= p[i - 1])) {
        problem("scope.s1_query_positions must increase strictly within [0, tokens)");
        break;
      }
    }
    if (c_.scope.heads.size() != c_.map.entries.size()) {
      problem("scope.heads must have one entry per (layer, kv head)");
      return;
    }
    for (std::size_t i = 0; i < c_.scope.heads.size(); ++i) {
      const HeadScope& h = c_.scope.heads[i];
      if (h.layer != c_.map.entries[i].layer || h.kv_head != c_.map.entries[i].kv_head) problem("scope.heads[" + std::to_string(i) + "] is out of order");
      for (const auto* v : {&h.s2_radius, &h.s2_bound, &h.s3_query_norm, &h.s3_bound}) {
        if (to_mpq(*v) < 0) problem("scope.heads[" + std::to_string(i) + "] has a negative radius or bound");
      }
    }
  }

  // Re-derives every obligation's truth, compares it with its verdict, and derives the overall verdict.
  void check_obligations() {
    std::map<std::string, int> seen;
    bool has_composition = false;
    for (const auto& o : c_.obligations) {
      if (++seen[o.name] > 1) problem("obligation " + o.name + " appears twice");
      has_composition |= o.kind == ObligationKind::kComposition;
      check_verdict_kind(o);
      const std::optional<bool> truth = obligation_truth(o);
      if (!truth) continue;  // a structural problem was recorded
      const Standing standing = obligation_standing(c_, o);
      if (standing == Standing::kProved && !*truth) problem(o.name + ": verdict proved, but the inequality does not hold");
      if (standing == Standing::kRefuted && *truth) problem(o.name + ": verdict refuted, but the inequality holds");
    }
    for (std::int64_t l = 0; l < c_.map.layers; ++l) {
      for (const char* kind : {"sufficiency", "necessity"}) {
        const std::string name = "layer" + std::to_string(l) + "_" + kind;
        if (!seen.contains(name)) problem("obligation " + name + " is missing");
      }
    }
    const std::size_t expected = 2 * static_cast<std::size_t>(c_.map.layers) + (has_composition ? 1 : 0);
    if (c_.obligations.size() != expected) problem("unexpected obligations beyond one sufficiency and one necessity per layer and one composition");
    const std::string derived = derived_verdict(c_);
    report_.verdict = derived;
    if (derived != c_.verdict) problem("verdict " + c_.verdict + " does not follow from the obligations (" + derived + ")");
  }

 private:
  void check_map_entry(const HeadMap& e, std::size_t i, std::size_t units) {
    const std::string where = "map.entries[" + std::to_string(i) + "]";
    if (e.layer != static_cast<std::int64_t>(i) / c_.map.kv_heads || e.kv_head != static_cast<std::int64_t>(i) % c_.map.kv_heads) {
      problem(where + " is out of order (layer-major, then kv head)");
    }
    if (e.key_formats.size() != units || e.value_formats.size() != units) {
      problem(where + " must have " + std::to_string(units) + " key and value formats");
    }
    for (const auto& f : e.key_formats) {
      if (!is_valid_format(f, static_cast<int>(c_.map.head_dim))) problem(where + ": key format " + format_name(f) + " is not valid for this head_dim");
    }
    for (const auto& f : e.value_formats) {
      if (!is_valid_format(f, static_cast<int>(c_.map.head_dim)) || f.axis == GroupAxis::kTokens) {
        problem(where + ": value format " + format_name(f) + " is not a valid value format");
      }
    }
  }

  // Which verdicts each kind may carry in each schema version: a necessity obligation is a
  // diagnostic (version 2 says so; version 1 wrote a solver's answer for it, read as a diagnostic),
  // and a recorded composition states exactly its composed bound as its budget.
  void check_verdict_kind(const Obligation& o) {
    const bool necessity = o.kind == ObligationKind::kNecessity;
    if (c_.version >= 2 && necessity && o.verdict != Verdict::kDiagnostic) {
      problem(o.name + ": a necessity obligation's verdict must be diagnostic (Theorem 5.7's rows cannot fail once the "
                       "rows below the obstruction are listed)");
    }
    if (o.verdict == Verdict::kDiagnostic && (c_.version < 2 || !necessity)) {
      problem(o.name + ": only a necessity obligation of a version 2 certificate is a diagnostic");
    }
    if (o.verdict == Verdict::kRecorded) {
      if (c_.version < 2 || o.kind != ObligationKind::kComposition) {
        problem(o.name + ": only the composition obligation of a version 2 certificate is recorded");
      } else if (const std::string total = composed_bound(o); total.empty() || to_mpq(total) != to_mpq(o.budget)) {
        problem(o.name + ": a recorded composition must state its composed bound as its budget");
      }
    }
  }

  const HeadMap* entry(std::int64_t layer, std::int64_t kv_head) const {
    if (layer < 0 || layer >= c_.map.layers || kv_head < 0 || kv_head >= c_.map.kv_heads) return nullptr;
    const auto& e = c_.map.entries[static_cast<std::size_t>(layer * c_.map.kv_heads + kv_head)];
    return e.key_formats.empty() ? nullptr : &e;
  }

  bool check_layer_budget(const Obligation& o) {
    if (o.layer < 0 || o.layer >= c_.map.layers) {
      problem(o.name + ": layer " + std::to_string(o.layer) + " is outside the map");
      return false;
    }
    const std::string expected_name =
        "layer" + std::to_string(o.layer) + "_" + std::string(obligation_kind_name(o.kind));
    if (o.name != expected_name) problem(o.name + ": name must be " + expected_name);
    if (c_.layer_eps.size() == static_cast<std::size_t>(c_.map.layers) &&
        to_mpq(o.budget) != to_mpq(c_.layer_eps[static_cast<std::size_t>(o.layer)])) {
      problem(o.name + ": budget is not the layer's epsilon");
    }
    return true;
  }

  std::optional<bool> obligation_truth(const Obligation& o) {
    switch (o.kind) {
      case ObligationKind::kSufficiency: return sufficiency_truth(o);
      case ObligationKind::kNecessity: return necessity_truth(o);
      case ObligationKind::kComposition: return composition_truth(o);
    }
    return std::nullopt;
  }

  // Rows must be exactly (kv head, query head of its group, recorded query of the scope), in
  // that order: a dropped row would hide a query from the certificate.
  std::optional<bool> sufficiency_truth(const Obligation& o) {
    if (!check_layer_budget(o)) return std::nullopt;
    const auto& positions = c_.scope.query_positions;
    const std::int64_t group = c_.map.heads / c_.map.kv_heads;
    const std::size_t expected = static_cast<std::size_t>(c_.map.heads) * positions.size();
    if (o.sufficiency.size() != expected) {
      problem(o.name + ": " + std::to_string(o.sufficiency.size()) + " rows, expected one per query head and recorded query (" + std::to_string(expected) + ")");
      return std::nullopt;
    }
    const mpq_class budget = to_mpq(o.budget);
    bool holds = true;
    std::size_t r = 0;
    for (std::int64_t kv = 0; kv < c_.map.kv_heads; ++kv) {
      for (std::int64_t h = kv * group; h < (kv + 1) * group; ++h) {
        for (const std::int64_t p : positions) {
          const SufficiencyRow& row = o.sufficiency[r++];
          if (row.kv_head != kv || row.head != h || row.position != p) {
            problem(o.name + ": row " + std::to_string(r - 1) + " is not (kv head " + std::to_string(kv) + ", head " + std::to_string(h) + ", position " + std::to_string(p) + ")");
            return std::nullopt;
          }
          const mpq_class bound = to_mpq(row.bound);
          if (bound < 0) problem(o.name + ": row " + std::to_string(r - 1) + " has a negative bound");
          holds &= bound <= budget;
          ++report_.inequalities;
        }
      }
    }
    return holds;
  }

  // Rows must be every (kv head, position), or from version 3 every (kv head, allocation unit)
  // with a position inside the unit; bits must be the map's key precision there; the rows listed
  // as below the obstruction must be exactly those failing 8 eps 4^bits >= kappa D^2.
  std::optional<bool> necessity_truth(const Obligation& o) {
    if (!check_layer_budget(o)) return std::nullopt;
    const bool per_unit = c_.version >= kPerUnitNecessityVersion;
    const std::int64_t units = (c_.map.tokens + c_.map.block - 1) / c_.map.block;
    const std::int64_t rows_per_head = per_unit ? units : c_.map.tokens;
    const std::size_t expected = static_cast<std::size_t>(c_.map.kv_heads * rows_per_head);
    if (o.necessity.size() != expected) {
      problem(o.name + ": " + std::to_string(o.necessity.size()) + " rows, expected one per kv head and " +
              (per_unit ? "allocation unit" : "position") + " (" + std::to_string(expected) + ")");
      return std::nullopt;
    }
    // 8 eps 4^bits for each precision (bits <= 64 by the parser), computed once.
    std::vector<std::optional<mpq_class>> capacity_of(65);
    const mpq_class eight_eps = 8 * to_mpq(o.budget);
    auto capacity = [&](int bits) -> const mpq_class& {
      auto& c = capacity_of[static_cast<std::size_t>(bits)];
      if (!c) {
        mpz_class power;
        mpz_ui_pow_ui(power.get_mpz_t(), 2, static_cast<unsigned long>(2 * bits));
        c = eight_eps * power;
      }
      return *c;
    };
    std::vector<std::int64_t> failing;
    std::size_t r = 0;
    for (std::int64_t kv = 0; kv < c_.map.kv_heads; ++kv) {
      const HeadMap* e = entry(o.layer, kv);
      if (e == nullptr) return std::nullopt;
      for (std::int64_t i = 0; i < rows_per_head; ++i, ++r) {
        const NecessityRow& row = o.necessity[r];
        const bool placed = per_unit ? row.position >= i * c_.map.block &&
                                           row.position < std::min(c_.map.tokens, (i + 1) * c_.map.block)
                                     : row.position == i;
        if (row.kv_head != kv || !placed) {
          problem(o.name + ": row " + std::to_string(r) + " is not (kv head " + std::to_string(kv) + ", " +
                  (per_unit ? "a position of unit " : "position ") + std::to_string(i) + ")");
          return std::nullopt;
        }
        const Format& f = e->key_formats[static_cast<std::size_t>(row.position / c_.map.block)];
        if (row.bits != precision_bits(f)) {
          problem(o.name + ": row " + std::to_string(r) + " has bits " + std::to_string(row.bits) + ", the map stores " + format_name(f));
        }
        const mpq_class kd2 = to_mpq(row.kappa_d2);
        if (kd2 < 0) problem(o.name + ": row " + std::to_string(r) + " has a negative kappa_d2");
        if (capacity(row.bits) < kd2) failing.push_back(static_cast<std::int64_t>(r));
        ++report_.inequalities;
      }
    }
    if (failing != o.below) {
      problem(o.name + ": the rows listed below the obstruction (" + std::to_string(o.below.size()) + ") are not exactly the failing rows (" + std::to_string(failing.size()) + ")");
    }
    if (!o.below.empty() && o.below_reason.empty()) problem(o.name + ": rows below the obstruction need a reason");
    return true;  // every row not listed holds (checked above by the equality of the lists)
  }

  std::optional<bool> composition_truth(const Obligation& o) {
    if (o.name != "composition" || o.layer != -1) problem("the composition obligation must be named composition with layer -1");
    const auto layers = static_cast<std::size_t>(c_.map.layers);
    if (o.lipschitz.size() != layers || o.injection.size() != layers || o.layer_eps.size() != layers) {
      problem("composition: lipschitz, injection and layer_eps need one entry per layer");
      return std::nullopt;
    }
    for (std::size_t l = 0; l < layers && l < c_.layer_eps.size(); ++l) {
      if (to_mpq(o.layer_eps[l]) != to_mpq(c_.layer_eps[l])) problem("composition: layer_eps differs from the certificate's");
      if (to_mpq(o.lipschitz[l]) < 1 || to_mpq(o.injection[l]) < 0) problem("composition: a Lipschitz bound below 1 or a negative injection");
    }
    ++report_.inequalities;
    return to_mpq(composed_bound(o)) <= to_mpq(o.budget);
  }

  const Certificate& c_;
  CheckReport& report_;
};

}  // namespace

std::string exact_rational(double value) {
  HNF_ASSERT(std::isfinite(value), "exact_rational needs a finite value");
  mpq_class q(value);  // exact: every finite double is a dyadic rational
  q.canonicalize();
  return q.get_str(10);
}

int compare_rationals(const std::string& a, const std::string& b) {
  HNF_ASSERT(is_exact_rational(a) && is_exact_rational(b), "compare_rationals needs exact rationals");
  return cmp(to_mpq(a), to_mpq(b));
}

double decimal_to_double_down(const std::string& text, const std::string& what) {
  // MPFR reads the decimal exactly and rounds once, toward minus infinity, to 53 bits.
  mpfr_t m;
  mpfr_init2(m, 53);
  char* end = nullptr;
  mpfr_strtofr(m, text.c_str(), &end, 10, MPFR_RNDD);
  const bool whole = !text.empty() && end != nullptr && *end == '\0' && text.find_first_of(" \t") == std::string::npos;
  const double d = mpfr_get_d(m, MPFR_RNDD);
  const bool finite = mpfr_number_p(m) != 0 && std::isfinite(d);
  mpfr_clear(m);
  if (!whole || !finite) throw bad_input(what, "'" + text + "' is not a finite decimal number");
  return d;
}

double rational_to_double(const std::string& rational) {
  HNF_ASSERT(is_exact_rational(rational), "rational_to_double needs an exact rational");
  // MPFR rounds the quotient once, to nearest (mpq_get_d would truncate).
  mpfr_t m;
  mpfr_init2(m, 53);
  mpfr_set_q(m, to_mpq(rational).get_mpq_t(), MPFR_RNDN);
  const double d = mpfr_get_d(m, MPFR_RNDN);
  mpfr_clear(m);
  return d;
}

bool is_exact_rational(std::string_view s) {
  if (s.starts_with('-')) s.remove_prefix(1);
  const auto slash = s.find('/');
  if (slash == std::string_view::npos) return all_digits(s);
  const std::string_view denominator = s.substr(slash + 1);
  return all_digits(s.substr(0, slash)) && all_digits(denominator) &&
         denominator.find_first_not_of('0') != std::string_view::npos;
}

std::string map_sha256(const PrecisionMap& map) {
  std::ostringstream text;
  text << "hnf-map 1\nlayers " << map.layers << " kv_heads " << map.kv_heads << " heads " << map.heads << " head_dim "
       << map.head_dim << " tokens " << map.tokens << " block " << map.block << "\n";
  for (const auto& e : map.entries) {
    text << e.layer << " " << e.kv_head << " K";
    for (const auto& f : e.key_formats) text << " " << format_name(f);
    text << " V";
    for (const auto& f : e.value_formats) text << " " << format_name(f);
    text << "\n";
  }
  const std::string s = text.str();
  return sha256_hex(std::as_bytes(std::span(s.data(), s.size())));
}

int precision_bits(const Format& format) {
  switch (format.encoding) {
    case Encoding::kF16: return 11;
    case Encoding::kBF16: return 8;
    default: return code_bits(format.encoding);
  }
}

int necessity_min_bits(const std::string& kappa_d2, const std::string& budget) {
  HNF_ASSERT(is_exact_rational(kappa_d2) && is_exact_rational(budget), "necessity_min_bits takes exact rationals");
  const mpq_class eight_eps = 8 * to_mpq(budget);
  HNF_ASSERT(eight_eps > 0, "a budget is positive");
  const mpq_class kd2 = to_mpq(kappa_d2);
  mpq_class capacity = eight_eps;  // 8 * eps * 2^(2b) for b = 0, 1, ...
  for (int bits = 0; bits <= kMaxNecessityBits; ++bits) {
    if (capacity >= kd2) return bits;
    capacity *= 4;
  }
  return kMaxNecessityBits + 1;
}

double map_bits_per_element(const PrecisionMap& map) {
  // Per unit: block positions (the last unit may be shorter) x head_dim elements, K and V.
  // Also called on maps the checker rejected (reports show them): no index past either list,
  // and the products in double, which cannot overflow.
  double bits = 0.0, elements = 0.0;
  for (const auto& e : map.entries) {
    for (std::size_t u = 0; u < std::min(e.key_formats.size(), e.value_formats.size()); ++u) {
      const double begin = static_cast<double>(u) * static_cast<double>(map.block);
      const double n = std::min<double>(map.block, static_cast<double>(map.tokens) - begin) * static_cast<double>(map.head_dim);
      bits += n * (storage_bits_per_element(e.key_formats[u]) + storage_bits_per_element(e.value_formats[u]));
      elements += 2.0 * n;
    }
  }
  return elements > 0.0 ? bits / elements : 0.0;
}

std::string_view obligation_kind_name(ObligationKind kind) noexcept {
  switch (kind) {
    case ObligationKind::kSufficiency: return "sufficiency";
    case ObligationKind::kNecessity: return "necessity";
    case ObligationKind::kComposition: return "composition";
  }
  return "sufficiency";
}

std::string_view verdict_name(Verdict verdict) noexcept {
  switch (verdict) {
    case Verdict::kProved: return "proved";
    case Verdict::kRefuted: return "refuted";
    case Verdict::kUnknown: return "unknown";
    case Verdict::kTimeout: return "timeout";
    case Verdict::kDiagnostic: return "diagnostic";
    case Verdict::kRecorded: return "recorded";
  }
  return "unknown";
}

std::string certificate_sha256(const Certificate& certificate) { return body_sha256(certificate_body(certificate)); }

std::string certificate_claim_sha256(const Certificate& certificate) { return body_sha256(claim_body(certificate)); }

std::string composed_bound(const Obligation& o) {
  const std::size_t layers = o.lipschitz.size();
  if (o.injection.size() != layers || o.layer_eps.size() != layers) return {};
  // Horner's rule from the first layer up: total = total * L_i + injection_i * eps_i. Each step
  // multiplies the large running total by one small rational (GMP's gcds are then large x small);
  // summing tail products instead added two large fractions per layer, which a certificate of
  // 1024 layers of 1000-digit rationals turned into minutes of gcds.
  mpq_class total = 0;
  for (std::size_t i = 0; i < layers; ++i) {
    total *= to_mpq(o.lipschitz[i]);
    total += to_mpq(o.injection[i]) * to_mpq(o.layer_eps[i]);
  }
  return total.get_str(10);
}

Standing obligation_standing(const Certificate& c, const Obligation& o) {
  if (o.kind == ObligationKind::kNecessity) return Standing::kDiagnostic;  // v1 wrote "proved": same meaning
  if (o.kind == ObligationKind::kComposition && c.version == 1 && o.verdict == Verdict::kProved) {
    // Version 1 stated its composed bound (rounded up) as the budget when no --eps-total was
    // given, and wrote "proved". Only a recorded certify command naming --eps-total shows a real
    // budget; without one, nothing establishes that the budget was not the bound itself.
    if (c.certify_command.find(" --eps-total ") == std::string::npos) return Standing::kRecorded;
  }
  switch (o.verdict) {
    case Verdict::kProved: return Standing::kProved;
    case Verdict::kRefuted: return Standing::kRefuted;
    case Verdict::kUnknown:
    case Verdict::kTimeout: return Standing::kOpen;
    case Verdict::kDiagnostic: return Standing::kDiagnostic;
    case Verdict::kRecorded: return Standing::kRecorded;
  }
  return Standing::kOpen;
}

std::string_view standing_name(Standing standing) noexcept {
  switch (standing) {
    case Standing::kProved: return "proved";
    case Standing::kRefuted: return "refuted";
    case Standing::kOpen: return "open";
    case Standing::kDiagnostic: return "diagnostic";
    case Standing::kRecorded: return "recorded";
  }
  return "open";
}

ObligationCounts count_obligations(const Certificate& c) {
  ObligationCounts n;
  for (const auto& o : c.obligations) {
    switch (obligation_standing(c, o)) {
      case Standing::kProved: ++n.proved; break;
      case Standing::kRefuted: ++n.refuted; break;
      case Standing::kOpen: ++n.open; break;
      case Standing::kDiagnostic: ++n.diagnostic; break;
      case Standing::kRecorded: ++n.recorded; break;
    }
  }
  return n;
}

std::string derived_verdict(const Certificate& c) {
  const ObligationCounts n = count_obligations(c);
  if (n.refuted > 0) return "refuted";
  return n.open == 0 && n.proved > 0 ? "certified" : "unknown";
}

namespace {

// The certificate's text: `body` with certificate_sha256, the hash of everything else, in place.
std::string sealed_json(Json body) {
  body.erase("certificate_sha256");
  body["certificate_sha256"] = body_sha256(body);
  return body.dump(1) + "\n";
}

Json parse_certificate_json(std::string_view text, const std::string& file) { return parse_json(text, file); }

}  // namespace

std::string certificate_to_json(const Certificate& certificate) { return sealed_json(certificate_body(certificate)); }

std::string reseal_certificate_json(std::string_view text, const std::string& file) {
  Json body = parse_certificate_json(text, file);
  if (!body.is_object()) throw bad_input(file, "certificate is not a JSON object");
  return sealed_json(std::move(body));
}

Certificate certificate_from_json(std::string_view text, const std::string& file) {
  const Json j = parse_certificate_json(text, file);
  ObjectReader r(j, "certificate", file);
  if (r.string("format") != "hnf-certificate") r.fail("format", "is not hnf-certificate");
  Certificate c;
  c.version = static_cast<int>(r.integer("version", 0, std::numeric_limits<int>::max()));
  if (c.version < kOldestCertificateVersion || c.version > kCertificateVersion) {
    r.fail("version", "is " + std::to_string(c.version) + "; this tool reads versions " +
                          std::to_string(kOldestCertificateVersion) + " to " + std::to_string(kCertificateVersion));
  }
  c.tool_version = r.string("tool_version");
  c.model_id = r.string("model_id");
  c.model_sha256 = r.string("model_sha256", kMaxHashChars);
  c.trace_file = r.string("trace_file", kMaxFileNameChars);
  c.trace_sha256 = r.string("trace_sha256", kMaxHashChars);
  c.text_sha256 = r.string("text_sha256", kMaxHashChars);
  c.map_sha256 = r.string("map_sha256", kMaxHashChars);
  c.verdict = r.string("verdict");
  if (c.verdict != "certified" && c.verdict != "refuted" && c.verdict != "unknown") r.fail("verdict", "must be certified, refuted or unknown");
  c.eps = r.rational("eps");
  c.layer_eps = r.strings("layer_eps", true);
  c.bits_per_element = r.number("bits_per_element", 0.0, kMaxBitsPerElement);
  c.map = parse_map(r.field("map"), file);
  c.scope = parse_scope(r.field("scope"), file);
  std::size_t index = 0;
  for (const auto& o : r.array("obligations")) c.obligations.push_back(parse_obligation(o, index++, file));
  if (r.has("certify_command")) c.certify_command = r.string("certify_command");
  if (r.has("policy")) {
    if (c.version < kPolicyVersion) r.fail("policy", "is not part of version " + std::to_string(c.version));
    c.policy = parse_policy(r.field("policy"), file);
    c.policy_sha256 = r.string("policy_sha256", kMaxHashChars);
  }
  if (r.has("prediction")) {
    if (c.version < kPolicyVersion) r.fail("prediction", "is not part of version " + std::to_string(c.version));
    c.prediction = parse_prediction(r.field("prediction"), file);
  }
  const std::string stated_hash = r.string("certificate_sha256", kMaxHashChars);
  r.finish();
  if (stated_hash != certificate_sha256(c)) {
    throw bad_input(file, "certificate_sha256 does not match the content: the certificate was modified");
  }
  return c;
}

CheckReport check_certificate_text(std::string_view text, const std::string& file, const CheckOptions& options,
                                   std::string_view tool_version) {
  const Certificate c = certificate_from_json(text, file);
  CheckReport report;
  Checker checker(c, report);
  checker.check_header(options, tool_version);
  if (checker.check_map()) {
    checker.check_budgets();
    checker.check_scope();
    checker.check_obligations();
  }
  if (report.problems.empty() && options.recompute) {
    const WitnessCheck witnesses = options.recompute(c);
    report.witnesses_compared = witnesses.compared;
    report.problems.insert(report.problems.end(), witnesses.problems.begin(), witnesses.problems.end());
  }
  if (report.problems.empty() && options.attestation) {
    HNF_ASSERT(options.trusted_key.has_value(), "an attestation is verified under a configured public key");
    const std::string why = attestation_problem(*options.attestation, c, *options.trusted_key);
    if (why.empty()) {
      report.attested = true;
    } else {
      report.problems.push_back(why);
    }
  }
  if (report.problems.empty() && report.verdict == "certified") {
    // The one place a CertifiedPrecisionMap is made (its constructor is private; this is its friend).
    CertifiedPrecisionMap m;
    m.map_ = c.map;
    m.policy_ = c.policy;
    m.map_sha256_ = c.map_sha256;
    m.model_sha256_ = c.model_sha256;
    m.trace_sha256_ = c.trace_sha256;
    m.eps_ = c.eps;
    m.layer_eps_ = c.layer_eps;
    m.scope_ = c.scope;
    m.model_verified_ = report.model_compared;
    m.trace_verified_ = report.trace_compared;
    m.witnesses_recomputed_ = static_cast<bool>(options.recompute);
    m.witnesses_attested_ = report.attested;
    report.certified = std::move(m);
  }
  return report;
}

std::string read_certificate_text(const std::filesystem::path& path) {
  // One consistent snapshot: a certificate rewritten or truncated while read is refused.
  return read_regular_file(path, kMaxCertificateBytes, "a certificate");
}

CheckReport check_certificate(const std::filesystem::path& path, const CheckOptions& options, std::string_view tool_version) {
  return check_certificate_text(read_certificate_text(path), path.string(), options, tool_version);
}

}  // namespace hnf::proofs
