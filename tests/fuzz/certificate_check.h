// The consumers of a certificate that the fuzz targets certificate and certificate_resealed drive:
// the exact checker (what check, gate and eval --cache run) and, on a certificate that parses,
// the audit report (what `report` renders, for rejected certificates too).
#pragma once

#include <string>
#include <string_view>

#include "fuzz_support.h"
#include "hnf/proofs/certificate.h"
#include "hnf/reports/certificate_report.h"

namespace hnf::fuzz {

inline constexpr std::string_view kFuzzToolVersion = "hnf-verify fuzz";

inline void check_and_report(std::string_view text, const std::string& file) {
  proofs::CheckReport check = proofs::check_certificate_text(text, file, proofs::CheckOptions{}, kFuzzToolVersion);
  if (check.certified && !check.problems.empty()) finding("certified with problems", file);
  reports::ReportInput input;
  input.certificate = proofs::certificate_from_json(text, file);
  input.certificate_path = file;
  input.check = std::move(check);
  input.tool_version = std::string(kFuzzToolVersion);
  const reports::ReportFacts facts = reports::report_facts(input);
  (void)reports::render_markdown(input, facts);
  (void)reports::render_html(input, facts);
}

}  // namespace hnf::fuzz
