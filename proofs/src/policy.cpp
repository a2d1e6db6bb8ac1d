#include "hnf/proofs/policy.h"

#include <charconv>
#include <optional>
#include <sstream>

#include "hnf/proofs/certificate.h"
#include "hnf/proofs/error.h"
#include "hnf/proofs/sha256.h"

namespace hnf::proofs {

std::string_view age_class_name(AgeClass age) noexcept {
  switch (age) {
    case AgeClass::kSink: return "sink";
    case AgeClass::kRecent: return "recent";
    case AgeClass::kOld: return "old";
  }
  return "?";
}

AgeClass age_class(const PrecisionPolicy& policy, std::int64_t position, std::int64_t length) noexcept {
  const std::int64_t page = position / policy.page;
  if (page < policy.sink_pages) return AgeClass::kSink;
  const std::int64_t pages = (length + policy.page - 1) / policy.page;
  return page >= pages - policy.recent_pages ? AgeClass::kRecent : AgeClass::kOld;
}

namespace {

bool is_float_encoding(Encoding e) { return e == Encoding::kF16 || e == Encoding::kBF16; }

std::string class_formats_problem(const ClassFormats& formats, const PrecisionPolicy& p, const char* side) {
  for (std::size_t a = 0; a < kAgeClasses; ++a) {
    const Format& f = formats[a];
    const std::string where = std::string(side) + " " + std::string(age_class_name(static_cast<AgeClass>(a)));
    if (!is_valid_format(f, static_cast<int>(p.head_dim))) return where + ": format not valid for head_dim";
    if (f.axis == GroupAxis::kTokens && std::string_view(side) == "values") {
      return where + ": " + format_name(f) + " groups values per channel; values are stored per token";
    }
    if (f.axis == GroupAxis::kTokens && f.group_size != p.page) {
      return where + ": " + format_name(f) + " groups " + std::to_string(f.group_size) +
             " positions but a page is " + std::to_string(p.page);
    }
  }
  const Format& recent = class_format(formats, AgeClass::kRecent);
  if (!is_float_encoding(recent.encoding) && !(recent == class_format(formats, AgeClass::kOld))) {
    return std::string(side) + " recent: " + format_name(recent) +
           " would be re-quantized from its own codes when the row ages; a recent format is fp16, bf16 or the old format";
  }
  return {};
}

}  // namespace

DitherKey dither_key(const PrecisionPolicy& policy, std::uint64_t seed, std::int64_t layer, std::int64_t kv_head, bool values,
                     AgeClass age) noexcept {
  return {.seed = seed, .stream = static_cast<std::uint32_t>(layer * policy.kv_heads + kv_head),
          .side = static_cast<std::uint8_t>(values ? 1 : 0), .age = static_cast<std::uint8_t>(age)};
}

std::string policy_problem(const PrecisionPolicy& p) {
  if (p.layers <= 0 || p.kv_heads <= 0 || p.heads <= 0 || p.head_dim <= 0) return "shape must be positive";
  if (p.heads % p.kv_heads != 0) return "heads must be a multiple of kv_heads";
  if (p.page != 16 && p.page != 32 && p.page != 64) return "page must be 16, 32 or 64 positions";
  if (p.sink_pages < 0 || p.sink_pages > (std::int64_t{1} << 40)) return "sink_pages out of range";
  if (p.recent_pages < 1 || p.recent_pages > (std::int64_t{1} << 40)) return "recent_pages must be at least 1";
  if (p.rounding != Rounding::kNearest && p.rounding != Rounding::kStochastic) return "unknown rounding";
  if (p.calibration_seed >= kSeedLimit) return "calibration_seed must be below 2^53";
  if (p.rounding == Rounding::kNearest && p.calibration_seed != 0) return "a calibration seed goes with stochastic rounding";
  if (p.entries.size() != static_cast<std::size_t>(p.layers * p.kv_heads)) {
    return "expected one entry per (layer, kv head)";
  }
  for (std::size_t i = 0; i < p.entries.size(); ++i) {
    const HeadPolicy& e = p.entries[i];
    const std::string where = "entry layer " + std::to_string(e.layer) + " kv head " + std::to_string(e.kv_head);
    if (e.layer != static_cast<std::int64_t>(i) / p.kv_heads || e.kv_head != static_cast<std::int64_t>(i) % p.kv_heads) {
      return where + ": entries must be in layer-major order";
    }
    for (const auto& problem : {class_formats_problem(e.keys, p, "keys"), class_formats_problem(e.values, p, "values")}) {
      if (!problem.empty()) return where + ": " + problem;
    }
  }
  return {};
}

std::string policy_sha256(const PrecisionPolicy& p) {
  std::ostringstream text;
  text << "hnf-policy 1\nlayers " << p.layers << " kv_heads " << p.kv_heads << " heads " << p.heads << " head_dim "
       << p.head_dim << " page " << p.page << " sink_pages " << p.sink_pages << " recent_pages " << p.recent_pages
       << "\n";
  // Only stochastic rounding adds a line: hashes of nearest-rounding policies are unchanged.
  if (p.rounding == Rounding::kStochastic) text << "rounding stochastic calibration_seed " << p.calibration_seed << "\n";
  for (const auto& e : p.entries) {
    text << e.layer << " " << e.kv_head << " K";
    for (const auto& f : e.keys) text << " " << format_name(f);
    text << " V";
    for (const auto& f : e.values) text << " " << format_name(f);
    text << "\n";
  }
  const std::string s = text.str();
  return sha256_hex(std::as_bytes(std::span(s.data(), s.size())));
}

PrecisionMap expand_policy(const PrecisionPolicy& p, std::int64_t length) {
  HNF_ASSERT(policy_problem(p).empty() && length >= 1, "expand_policy takes a well-formed policy and a length");
  PrecisionMap map{.layers = p.layers, .kv_heads = p.kv_heads, .heads = p.heads, .head_dim = p.head_dim,
                   .tokens = length, .block = p.page, .entries = {}};
  const std::int64_t pages = (length + p.page - 1) / p.page;
  for (const auto& e : p.entries) {
    HeadMap h{.layer = e.layer, .kv_head = e.kv_head, .key_formats = {}, .value_formats = {}};
    for (std::int64_t g = 0; g < pages; ++g) {
      const AgeClass age = age_class(p, g * p.page, length);
      h.key_formats.push_back(class_format(e.keys, age));
      h.value_formats.push_back(class_format(e.values, age));
    }
    map.entries.push_back(std::move(h));
  }
  return map;
}

double policy_bits_per_element(const PrecisionPolicy& p, std::int64_t length) {
  return map_bits_per_element(expand_policy(p, length));
}

PrecisionPolicy uniform_policy(std::int64_t layers, std::int64_t kv_heads, std::int64_t heads, std::int64_t head_dim,
                               int page, std::int64_t sink_pages, std::int64_t recent_pages, const ClassFormats& keys,
                               const ClassFormats& values) {
  PrecisionPolicy p{.layers = layers, .kv_heads = kv_heads, .heads = heads, .head_dim = head_dim, .page = page,
                    .sink_pages = sink_pages, .recent_pages = recent_pages, .entries = {}};
  for (std::int64_t l = 0; l < layers; ++l) {
    for (std::int64_t h = 0; h < kv_heads; ++h) p.entries.push_back({.layer = l, .kv_head = h, .keys = keys, .values = values});
  }
  return p;
}

namespace {

std::int64_t parse_count(std::string_view text, std::string_view key, const std::string& what) {
  std::int64_t value = -1;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value < 0 || value > (std::int64_t{1} << 40)) {
    throw bad_input(what, std::string(key) + "=" + std::string(text) + " is not a count of pages");
  }
  return value;
}

ClassFormats parse_class_formats(std::string_view text, std::string_view key, const std::string& what) {
  std::vector<Format> formats;
  std::size_t begin = 0;
  while (begin <= text.size()) {
    const std::size_t slash = std::min(text.find('/', begin), text.size());
    const std::string_view name = text.substr(begin, slash - begin);
    const auto f = parse_format(name);
    if (!f) throw bad_input(what, std::string(key) + ": unknown format '" + std::string(name) + "'");
    formats.push_back(*f);
    begin = slash + 1;
  }
  if (formats.size() == 1) return {formats[0], formats[0], formats[0]};
  if (formats.size() != kAgeClasses) {
    throw bad_input(what, std::string(key) + " takes one format or three (sink/recent/old)");
  }
  return {formats[0], formats[1], formats[2]};
}

}  // namespace

PrecisionPolicy parse_policy_spec(std::string_view spec, std::int64_t layers, std::int64_t kv_heads, std::int64_t heads,
                                  std::int64_t head_dim, const std::string& what) {
  std::int64_t page = 16, sink = 1, recent = 1, seed = -1;
  Rounding rounding = Rounding::kNearest;
  std::optional<ClassFormats> keys, values;
  std::size_t begin = 0;
  while (begin < spec.size()) {
    const std::size_t end = std::min(spec.find_first_of(" ,", begin), spec.size());
    const std::string_view item = spec.substr(begin, end - begin);
    begin = end + 1;
    if (item.empty()) continue;
    const std::size_t eq = item.find('=');
    if (eq == std::string_view::npos) throw bad_input(what, "'" + std::string(item) + "' is not key=value");
    const std::string_view key = item.substr(0, eq), value = item.substr(eq + 1);
    if (key == "page") page = parse_count(value, key, what);
    else if (key == "sink") sink = parse_count(value, key, what);
    else if (key == "recent") recent = parse_count(value, key, what);
    else if (key == "seed") seed = parse_count(value, key, what);
    else if (key == "rounding") {
      if (value == "nearest") rounding = Rounding::kNearest;
      else if (value == "stochastic") rounding = Rounding::kStochastic;
      else throw bad_input(what, "rounding is nearest or stochastic, not '" + std::string(value) + "'");
    }
    else if (key == "k") keys = parse_class_formats(value, key, what);
    else if (key == "v") values = parse_class_formats(value, key, what);
    else throw bad_input(what, "unknown key '" + std::string(key) + "' (page, sink, recent, k, v, rounding, seed)");
  }
  if (!keys || !values) throw bad_input(what, "a policy names k= and v= formats");
  if (page != 16 && page != 32 && page != 64) throw bad_input(what, "page must be 16, 32 or 64");
  if (seed >= 0 && rounding != Rounding::kStochastic) throw bad_input(what, "seed goes with rounding=stochastic");
  PrecisionPolicy p = uniform_policy(layers, kv_heads, heads, head_dim, static_cast<int>(page), sink, recent, *keys, *values);
  p.rounding = rounding;
  if (rounding == Rounding::kStochastic) p.calibration_seed = seed >= 0 ? static_cast<std::uint64_t>(seed) : 1;
  if (const std::string problem = policy_problem(p); !problem.empty()) throw bad_input(what, problem);
  return p;
}

}  // namespace hnf::proofs
