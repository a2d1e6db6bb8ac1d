// analysis.json (docs/analysis.md) and the readable summary of an AnalysisResult.
// Every figure is computed from the result passed in; sharpness compares each bound with
// the rigorous lower bound of the actual error of the same (layer, head, query).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "hnf/analysis/analyze.h"

namespace hnf::analysis {

struct RatioStats {
  std::int64_t count = 0;  // cases with a positive actual error
  double median = 0.0;
  double p90 = 0.0;
  double max = 0.0;
};

struct AnalysisSummary {
  RatioStats s1, s2, s3;              // bound / actual error over the recorded queries
  std::int64_t holdout_total = 0;     // held-out queries at analysed positions
  std::int64_t holdout_inside = 0;    // ... within the S2 radius of the recorded query
  RatioStats holdout;                 // S2 bound / actual error of the held-out queries inside
  double key_bits = 0.0;              // bits per key element of the map (metadata included)
  double value_bits = 0.0;
  std::vector<std::pair<std::string, double>> key_format_share;    // format name, share of units
  std::vector<std::pair<std::string, double>> value_format_share;
};

[[nodiscard]] RatioStats ratio_stats(std::vector<double> ratios);
[[nodiscard]] AnalysisSummary summarize(const AnalysisResult& result);
// The analysis as JSON (format "hnf-analysis"); with_positions false leaves out each head's
// per-position arrays ("positions"), which are most of it at long context.
[[nodiscard]] nlohmann::json analysis_to_json(const AnalysisResult& result, bool with_positions = true);
// The same JSON text (per-position arrays included, one line), passed to `write` in pieces, so
// that a long trace's analysis is never held as one document in memory.
void write_analysis_json(const AnalysisResult& result, const std::function<void(std::string_view)>& write);
[[nodiscard]] std::string summary_text(const AnalysisResult& result);

}  // namespace hnf::analysis
