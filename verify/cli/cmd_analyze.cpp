// hnf-verify analyze: per-position bounds, a precision map for an error or bit budget, and
// the S1/S2/S3 error bounds of that map, written to analysis.json with a readable summary.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "commands.h"
#include "hnf/analysis/analysis_report.h"
#include "hnf/analysis/analyze.h"
#include "hnf/proofs/error.h"
#include "hnf/proofs/write_file.h"
#include "hnf/proofs/format.h"
#include "progress.h"

namespace hnf::verify::cli {
namespace {

// "VmRSS ... kB VmHWM ... kB" of this process (Linux), for HNF_ANALYZE_TIMING.
std::string resident_memory() {
  std::FILE* f = std::fopen("/proc/self/status", "r");
  if (f == nullptr) return {};
  std::string out;
  char line[256];
  while (std::fgets(line, sizeof line, f) != nullptr) {
    const std::string_view l(line);
    if (l.starts_with("VmRSS:") || l.starts_with("VmHWM:")) {
      std::string field(l.substr(0, l.find_last_not_of(" \n") + 1));
      field.erase(std::unique(field.begin(), field.end(), [](char a, char b) { return a == ' ' && b == ' '; }), field.end());
      out += (out.empty() ? "" : ", ") + field;
    }
  }
  std::fclose(f);
  return out;
}

struct AnalyzeCommandOptions {
  std::string trace;
  std::string out;
  bool json = false;
  double eps = 0.0;
  double bits = 0.0;
  std::string uniform_map;
  analysis::AnalysisOptions analysis;
};

// "--map int4-d32" or "--map int2-t16,int2-d32" (keys, values): every block gets these formats.
void set_uniform_map(const std::string& spec, analysis::AnalysisOptions& options) {
  const auto comma = spec.find(',');
  const std::string key_name = spec.substr(0, comma);
  const std::string value_name = comma == std::string::npos ? key_name : spec.substr(comma + 1);
  const auto key = proofs::parse_format(key_name);
  const auto value = proofs::parse_format(value_name);
  if (!key) throw proofs::bad_input("--map", "unknown format '" + key_name + "'");
  if (!value) throw proofs::bad_input("--map", "unknown format '" + value_name + "'");
  if (value->axis == proofs::GroupAxis::kTokens)
    throw proofs::bad_input("--map", "per-channel format '" + value_name + "' is offered for keys only");
  options.fixed_map = [k = *key, v = *value](std::int64_t, std::int64_t, std::size_t units,
                                             std::vector<proofs::Format>& keys, std::vector<proofs::Format>& values) {
    keys.assign(units, k);
    values.assign(units, v);
  };
}

int run_analyze(AnalyzeCommandOptions o, bool eps_given, bool bits_given) {
  if (eps_given) o.analysis.eps = o.eps;
  if (bits_given) o.analysis.bits = o.bits;
  if (!o.uniform_map.empty()) {
    if (bits_given) throw proofs::bad_input("--map", "a fixed map takes --eps (for the obstruction bound), not --bits");
    set_uniform_map(o.uniform_map, o.analysis);
  }
  Progress progress("analyze " + o.trace, 1000);
  // HNF_ANALYZE_TIMING=1 prints each stage's start time and the resident and peak resident
  // memory at that moment (VmRSS, VmHWM of /proc/self/status) on stderr (for benchmarks).
  const bool timing = std::getenv("HNF_ANALYZE_TIMING") != nullptr;
  const auto start = std::chrono::steady_clock::now();
  o.analysis.progress = [&, timing, start](std::string_view stage, double fraction) {
    progress.update(static_cast<std::uint64_t>(fraction * 1000.0));
    if (timing) {
      const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      std::fprintf(stderr, "%8.3f s  %5.1f%%  %-14.*s %s\n", t, 100.0 * fraction, static_cast<int>(stage.size()),
                   stage.data(), resident_memory().c_str());
    }
  };
  const auto result = analysis::analyze_trace(o.trace, o.analysis);
  if (!o.out.empty())
    proofs::write_streamed_atomically(o.out, [&](const proofs::TextSink& sink) { analysis::write_analysis_json(result, sink); });
  if (o.json) {
    std::fputs((analysis::analysis_to_json(result).dump(2) + "\n").c_str(), stdout);
  } else {
    std::fputs(analysis::summary_text(result).c_str(), stdout);
    if (!o.out.empty()) std::printf("wrote %s\n", o.out.c_str());
  }
  return result.feasible ? 0 : static_cast<int>(proofs::ExitCode::kRefuted);
}

}  // namespace

void register_analyze(CLI::App& app, int* exit_code) {
  auto o = std::make_shared<AnalyzeCommandOptions>();
  CLI::App* cmd = app.add_subcommand(
      "analyze",
      "Per-position curvature and obstruction bounds, a precision map for an error (--eps) or size (--bits) "
      "budget, and its S1/S2/S3 error bounds. Exit 0 when the budget is met, 1 when no map of the "
      "format vocabulary meets it (the report says where and the smallest feasible epsilon), 3 on bad input");
  cmd->add_option("trace", o->trace, "Trace file (hnf-trace safetensors)")->required();
  auto* eps = cmd->add_option("--eps", o->eps, "Budget for ||o_hat - o||_2 of every (layer, head, recorded query)");
  auto* bits = cmd->add_option("--bits", o->bits, "Average storage bits per K/V element, metadata included");
  eps->excludes(bits);
  cmd->add_option("--layer-eps", o->analysis.layer_eps,
                  "Per-layer budgets E0,E1,... (one per layer; with --eps, which then only sets the default)")
      ->delimiter(',');
  cmd->add_option("--out", o->out, "Write analysis.json here");
  cmd->add_flag("--json", o->json, "Print the JSON instead of the summary");
  cmd->add_option("--last-queries", o->analysis.last_queries, "Analyse the newest N recorded queries ...")
      ->capture_default_str();
  cmd->add_option("--query-stride", o->analysis.query_stride,
                  "... plus every S-th recorded query (0: a stride giving about N more)")
      ->capture_default_str();
  cmd->add_option("--block", o->analysis.block, "Allocation unit in positions: 16, 32 or 64")->capture_default_str();
  cmd->add_option("--s2-quantile", o->analysis.s2_quantile,
                  "S2 radius: this quantile of the distance between consecutive recorded queries")
      ->capture_default_str();
  cmd->add_option("--model", o->analysis.model,
                  "Allocation objective: rms (predicted error) or bound (rigorous separable bound)")
      ->capture_default_str();
  cmd->add_option("--delta-cap", o->analysis.delta_cap,
                  "Largest score perturbation (nats) a format may cause in a block to be offered there")
      ->capture_default_str();
  cmd->add_option("--map", o->uniform_map,
                  "Evaluate a uniform map instead of allocating: KEY_FORMAT[,VALUE_FORMAT], e.g. int4-d32 or "
                  "int2-t16,int2-d32 (formats: fp16 bf16 int{8,4,3,2}-d{32,64,128} int{8,4,3,2}-t{16,32,64})");
  cmd->add_option("--holdout", o->analysis.holdout_trace,
                  "Trace of another text (same shape): S2 coverage and sharpness on unseen queries");
  cmd->callback([o, eps, bits, exit_code] {
    if (eps->count() == 0 && bits->count() == 0) throw proofs::bad_input("analyze", "give --eps or --bits");
    *exit_code = run_analyze(*o, eps->count() > 0, bits->count() > 0);
  });
}

}  // namespace hnf::verify::cli
