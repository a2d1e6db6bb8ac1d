// Small text helpers the reports share: quoting for shell commands, escaping for HTML and XML,
// display of exact rationals.
#pragma once

#include <string>
#include <string_view>

namespace hnf::reports {

// `s` as one POSIX shell word: unchanged when it holds only [A-Za-z0-9_./:=,+-] (and is not
// empty), else in single quotes with each ' written as '\''.
[[nodiscard]] std::string shell_quote(std::string_view s);
// & < > " ' escaped: safe in HTML/XML text and in double- or single-quoted attributes.
[[nodiscard]] std::string xml_escape(std::string_view s);
// An exact rational "p" or "p/q" for display: the nearest double in %.6g, or the text itself
// when it is short (integers, small fractions). Display only, never for a decision.
[[nodiscard]] std::string display_rational(const std::string& rational);

}  // namespace hnf::reports
