#include "hnf/reports/gate.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <limits>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "hnf/proofs/error.h"
#include "hnf/proofs/format.h"
#include "hnf/proofs/json_limits.h"
#include "hnf/reports/markdown_table.h"
#include "hnf/reports/text.h"

namespace hnf::reports {
namespace {

using Json = nlohmann::json;

// Largest decimal exponent a policy may write (keeps the rational's digits bounded).
constexpr int kMaxExponent = 400;
// Longest max_eps string (docs/hostile-input.md).
constexpr std::size_t kMaxDecimalChars = 64;

// "X.Y.Z" (optionally after "hnf-verify ") as three numbers; nullopt when it is not one.
std::optional<std::array<long, 3>> parse_version(std::string text) {
  const std::string prefix = "hnf-verify ";
  if (text.rfind(prefix, 0) == 0) text = text.substr(prefix.size());
  std::array<long, 3> v{};
  std::size_t at = 0;
  for (int i = 0; i < 3; ++i) {
    std::size_t end = at;
    while (end < text.size() && std::isdigit(static_cast<unsigned char>(text[end]))) ++end;
    if (end == at || end - at > 9) return std::nullopt;
    v[static_cast<std::size_t>(i)] = std::stol(text.substr(at, end - at));
    if (i < 2) {
      if (end >= text.size() || text[end] != '.') return std::nullopt;
      at = end + 1;
    } else if (end != text.size()) {
      return std::nullopt;
    }
  }
  return v;
}

std::string status_name(RuleStatus s) {
  switch (s) {
    case RuleStatus::kPass: return "pass";
    case RuleStatus::kFail: return "fail";
    case RuleStatus::kUnknown: return "unknown";
  }
  return "unknown";
}

RuleResult rule(std::string name, bool ok, std::string message) {
  return {std::move(name), ok ? RuleStatus::kPass : RuleStatus::kFail, std::move(message)};
}

class PolicyReader {
 public:
  PolicyReader(const Json& j, std::string where, const std::string& file) : j_(j), where_(std::move(where)), file_(file) {
    if (!j_.is_object()) fail("", "is not a JSON object");
  }
  [[noreturn]] void fail(const std::string& key, const std::string& problem) const {
    throw proofs::bad_input(file_, where_ + (key.empty() ? "" : "." + key) + " " + problem);
  }
  const Json* find(const std::string& key) {
    seen_.insert(key);
    const auto it = j_.find(key);
    return it == j_.end() ? nullptr : &*it;
  }
  void finish() const {
    for (const auto& [key, value] : j_.items()) {
      if (!seen_.contains(key)) fail(key, "is not a policy setting (see docs/ci-gate.md)");
    }
  }

 private:
  const Json& j_;
  std::string where_;
  const std::string& file_;
  std::set<std::string> seen_;
};

}  // namespace

std::optional<std::string> decimal_rational(const std::string& text) {
  std::size_t i = 0;
  std::string sign;
  if (i < text.size() && (text[i] == '-' || text[i] == '+')) sign = text[i++] == '-' ? "-" : "";
  std::string digits;
  int scale = 0;  // value = digits * 10^(-scale)
  bool any = false;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) digits += text[i++], any = true;
  if (i < text.size() && text[i] == '.') {
    ++i;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) digits += text[i++], ++scale, any = true;
  }
  if (!any) return std::nullopt;
  if (i < text.size() && (text[i] == 'e' || text[i] == 'E')) {
    ++i;
    int esign = 1;
    if (i < text.size() && (text[i] == '-' || text[i] == '+')) esign = text[i++] == '-' ? -1 : 1;
    int exponent = 0;
    bool edigits = false;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
      exponent = exponent * 10 + (text[i++] - '0');
      edigits = true;
      if (exponent > kMaxExponent) return std::nullopt;
    }
    if (!edigits) return std::nullopt;
    scale -= esign * exponent;
  }
  if (i != text.size()) return std::nullopt;
  const auto first = digits.find_first_not_of('0');
  digits = first == std::string::npos ? "0" : digits.substr(first);
  if (scale < 0) {
    if (digits != "0") digits.append(static_cast<std::size_t>(-scale), '0');
    scale = 0;
  }
  if (digits == "0") return "0";
  return sign + digits + (scale == 0 ? "" : "/1" + std::string(static_cast<std::size_t>(scale), '0'));
}

Policy parse_policy(const std::string& text, const std::string& file) {
  const Json j = proofs::parse_json(text, file);
  Policy p;
  PolicyReader r(j, "policy", file);
  if (const Json* v = r.find("max_eps")) {
    if (v->is_string()) {
      p.max_eps_text = v->get<std::string>();
      // A budget is a short decimal; the limit keeps its rational and the printed rule short.
      if (p.max_eps_text.size() > kMaxDecimalChars) {
        r.fail("max_eps", "is a string of " + std::to_string(p.max_eps_text.size()) + " characters, over the limit of " +
                              std::to_string(kMaxDecimalChars));
      }
    } else if (v->is_number()) {
      p.max_eps_text = fmt::format("{}", v->get<double>());  // shortest text that reads back as the number
    } else {
      r.fail("max_eps", "is not a decimal number or string");
    }
    p.max_eps = decimal_rational(p.max_eps_text);
    if (!p.max_eps || proofs::compare_rationals(*p.max_eps, "0") <= 0) {
      r.fail("max_eps", "'" + p.max_eps_text + "' is not a positive decimal number");
    }
  }
  if (const Json* v = r.find("min_compression")) {
    const auto x = proofs::json_number(*v, std::numeric_limits<double>::denorm_min(), std::numeric_limits<double>::max());
    if (!x) r.fail("min_compression", "is not a positive number");
    p.min_compression = *x;
  }
  if (const Json* v = r.find("required_scope")) {
    PolicyReader s(*v, "policy.required_scope", file);
    for (const char* key : {"model", "composition"}) {
      if (const Json* b = s.find(key)) {
        if (!b->is_boolean()) s.fail(key, "is not true or false");
        (std::string(key) == "model" ? p.require_model : p.require_composition) = b->get<bool>();
      }
    }
    for (const char* key : {"min_tokens", "min_s1_queries"}) {
      if (const Json* n = s.find(key)) {
        const auto count = proofs::json_integer(*n, 0, std::numeric_limits<std::int64_t>::max());
        if (!count) s.fail(key, "is not a non-negative integer (at most 2^63 - 1)");
        (std::string(key) == "min_tokens" ? p.min_tokens : p.min_s1_queries) = *count;
      }
    }
    s.finish();
  }
  if (const Json* v = r.find("allowed_formats")) {
    if (!v->is_array()) r.fail("allowed_formats", "is not an array of format names");
    std::vector<proofs::Format> formats;
    for (const auto& name : *v) {
      const auto f = name.is_string() ? proofs::parse_format(name.get<std::string>()) : std::nullopt;
      if (!f) r.fail("allowed_formats", "has " + name.dump() + ", not a format name (fp16, bf16, int4-d64, int2-t16, ...)");
      formats.push_back(*f);
    }
    p.allowed_formats = formats;
  }
  if (const Json* v = r.find("min_tool_version")) {
    if (!v->is_string() || !parse_version(v->get<std::string>())) r.fail("min_tool_version", "is not a version X.Y.Z");
    p.min_tool_version = v->get<std::string>();
  }
  r.finish();
  return p;
}

RuleStatus CertificateGate::status() const {
  bool unknown = false;
  for (const auto& r : rules) {
    if (r.status == RuleStatus::kFail) return RuleStatus::kFail;
    unknown = unknown || r.status == RuleStatus::kUnknown;
  }
  return unknown ? RuleStatus::kUnknown : RuleStatus::kPass;
}

CertificateGate gate_certificate(const Policy& policy, const std::string& file, const proofs::Certificate& c,
                                 const proofs::CheckReport& check, const std::string& tool_version) {
  CertificateGate g;
  g.file = file;
  const bool valid = check.problems.empty();
  g.rules.push_back(rule("checker", valid,
                         valid ? fmt::format("accepted by the exact checker ({} inequalities re-validated)", check.inequalities)
                               : "rejected by the exact checker (" + tool_version + "): " + check.problems.front()));
  // A rejected certificate's stated verdict is its author's word only: the rule fails.
  if (!valid) {
    g.rules.push_back(rule("verdict", false, "the exact checker rejected the certificate (it states " + c.verdict + ")"));
  } else if (check.verdict == "unknown") {
    g.rules.push_back({"verdict", RuleStatus::kUnknown, "the verdict is unknown: an obligation timed out or the solver gave no answer"});
  } else {
    g.rules.push_back(rule("verdict", check.verdict == "certified", "the verdict is " + check.verdict));
  }
  // The bounds are the trace's only if the witnesses were re-derived or attested; otherwise it
  // is not established (unknown), never passed.
  if (!valid) {
    g.rules.push_back(rule("witnesses", false, "the certificate was rejected"));
  } else if (check.witnesses_compared > 0 || check.attested) {
    g.rules.push_back(rule("witnesses", true, check.attested ? std::string("attested under the configured public key")
                                                             : fmt::format("re-derived from the trace ({} compared)", check.witnesses_compared)));
  } else {
    g.rules.push_back({"witnesses", RuleStatus::kUnknown,
                       "neither re-derived nor attested: not established (give --attestation and --public-key)"});
  }
  if (policy.max_eps) {
    const bool ok = proofs::compare_rationals(c.eps, *policy.max_eps) <= 0;
    g.rules.push_back(rule("max_eps", ok, fmt::format("epsilon {} {} the policy's max_eps {}", display_rational(c.eps),
                                                      ok ? "<=" : "exceeds", policy.max_eps_text)));
  }
  if (policy.min_compression) {
    const double bits = proofs::map_bits_per_element(c.map);
    const double compression = 16.0 / bits;
    const bool ok = compression >= *policy.min_compression;
    g.rules.push_back(rule("min_compression", ok,
                           fmt::format("compression vs fp16 {:.3f}x ({:.4f} bits per element) {} the policy's min_compression {}x",
                                       compression, bits, ok ? ">=" : "is below", *policy.min_compression)));
  }
  if (policy.require_model) {
    // Tied to a model means the checker compared that model's file, not that a hash is written:
    // without --model it is not established (unknown), never passed.
    const bool tied = c.model_sha256 != "none" && c.model_sha256.size() == 64;
    if (tied && !(valid && check.model_compared)) {
      g.rules.push_back({"required_scope.model", RuleStatus::kUnknown, "the model file was not compared (give --model)"});
    } else {
      g.rules.push_back(rule("required_scope.model", tied,
                             tied ? "the model file's sha256 " + c.model_sha256.substr(0, 12) + "... was compared by the checker"
                                  : "not tied to a model file (model_sha256 is \"" + c.model_sha256 + "\": a synthetic trace)"));
    }
  }
  if (policy.require_composition) {
    // A recorded composition (no end-to-end budget) is not proved.
    bool proved = false, recorded = false;
    for (const auto& o : c.obligations) {
      if (o.kind != proofs::ObligationKind::kComposition) continue;
      proved = proved || proofs::obligation_standing(c, o) == proofs::Standing::kProved;
      recorded = recorded || proofs::obligation_standing(c, o) == proofs::Standing::kRecorded;
    }
    g.rules.push_back(rule("required_scope.composition", proved,
                           proved     ? "the end-to-end composition obligation is proved"
                           : recorded ? "the composition is recorded, not proved (certify with --eps-total)"
                                      : "no proved composition obligation (certify with --model --eps-total)"));
  }
  if (policy.min_tokens) {
    const bool ok = c.map.tokens >= *policy.min_tokens;
    g.rules.push_back(rule("required_scope.min_tokens", ok,
                           fmt::format("the map covers {} traced positions; the policy requires {}", c.map.tokens, *policy.min_tokens)));
  }
  if (policy.min_s1_queries) {
    const auto n = static_cast<std::int64_t>(c.scope.query_positions.size());
    const bool ok = n >= *policy.min_s1_queries;
    g.rules.push_back(rule("required_scope.min_s1_queries", ok,
                           fmt::format("S1 covers {} recorded query positions; the policy requires {}", n, *policy.min_s1_queries)));
  }
  if (policy.allowed_formats) {
    std::set<std::string> outside;
    for (const auto& e : c.map.entries) {
      for (const auto* side : {&e.key_formats, &e.value_formats}) {
        for (const auto& f : *side) {
          if (std::find(policy.allowed_formats->begin(), policy.allowed_formats->end(), f) == policy.allowed_formats->end()) {
            outside.insert(proofs::format_name(f));
          }
        }
      }
    }
    std::string list;
    for (const auto& name : outside) list += (list.empty() ? "" : ", ") + name;
    g.rules.push_back(rule("allowed_formats", outside.empty(),
                           outside.empty() ? "every format of the map is allowed" : "the map uses formats the policy does not allow: " + list));
  }
  if (policy.min_tool_version) {
    const auto have = parse_version(c.tool_version);
    const auto need = parse_version(*policy.min_tool_version);
    const bool ok = have && need && *have >= *need;
    g.rules.push_back(rule("min_tool_version", ok,
                           fmt::format("written by {}; the policy requires hnf-verify {} or newer", c.tool_version, *policy.min_tool_version)));
  }
  return g;
}

int gate_exit_code(const std::vector<CertificateGate>& gates) {
  bool unknown = false;
  for (const auto& g : gates) {
    const RuleStatus s = g.status();
    if (s == RuleStatus::kFail) return 1;
    unknown = unknown || s == RuleStatus::kUnknown;
  }
  return unknown ? 2 : 0;
}

std::string gate_junit_xml(const std::vector<CertificateGate>& gates, const std::string& policy_file) {
  std::size_t tests = 0, failures = 0, errors = 0;
  for (const auto& g : gates) {
    for (const auto& r : g.rules) {
      ++tests;
      failures += r.status == RuleStatus::kFail ? 1 : 0;
      errors += r.status == RuleStatus::kUnknown ? 1 : 0;
    }
  }
  std::string s = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
  s += fmt::format("<testsuites name=\"hnf-verify gate\" tests=\"{}\" failures=\"{}\" errors=\"{}\" time=\"0\">\n", tests,
                   failures, errors);
  for (std::size_t i = 0; i < gates.size(); ++i) {
    const auto& g = gates[i];
    std::size_t f = 0, e = 0;
    for (const auto& r : g.rules) {
      f += r.status == RuleStatus::kFail ? 1 : 0;
      e += r.status == RuleStatus::kUnknown ? 1 : 0;
    }
    s += fmt::format("  <testsuite name=\"{}\" id=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"0\" time=\"0\">\n",
                     xml_escape(g.file), i, g.rules.size(), f, e);
    s += "    <properties><property name=\"policy\" value=\"" + xml_escape(policy_file) + "\"/></properties>\n";
    for (const auto& r : g.rules) {
      s += fmt::format("    <testcase name=\"{}\" classname=\"{}\" time=\"0\"", xml_escape(r.rule), xml_escape(g.file));
      if (r.status == RuleStatus::kPass) {
        s += "/>\n";
        continue;
      }
      const char* tag = r.status == RuleStatus::kFail ? "failure" : "error";
      s += fmt::format(">\n      <{} message=\"{}\" type=\"{}\">{}</{}>\n    </testcase>\n", tag, xml_escape(r.message),
                       r.status == RuleStatus::kFail ? "policy" : "unknown", xml_escape(r.message), tag);
    }
    s += "  </testsuite>\n";
  }
  return s + "</testsuites>\n";
}

std::string gate_summary_markdown(const std::vector<CertificateGate>& gates, const std::string& policy_file) {
  const int code = gate_exit_code(gates);
  static const char* kOverall[] = {"PASS", "FAIL", "UNKNOWN"};
  std::string s = fmt::format("## hnf-verify gate: {}\n\n", kOverall[code]);
  s += fmt::format("Policy `{}`, {} certificate{}.\n\n", policy_file, gates.size(), gates.size() == 1 ? "" : "s");
  MarkdownTable t({{"certificate"}, {"rule"}, {"result"}, {"detail"}});
  for (const auto& g : gates) {
    for (const auto& r : g.rules) t.add_row({"`" + g.file + "`", r.rule, status_name(r.status), r.message});
  }
  return s + t.render();
}

}  // namespace hnf::reports
