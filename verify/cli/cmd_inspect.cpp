// hnf-verify inspect: a summary of a trace (or, with --raw, of any safetensors file).
#include <fmt/format.h>

#include <cstdio>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "commands.h"
#include "hnf/analysis/tensor_stats.h"
#include "hnf/analysis/trace.h"
#include "hnf/proofs/error.h"
#include "progress.h"

namespace hnf::verify::cli {
namespace {

struct InspectOptions {
  std::string file;
  bool json = false;
  bool strict = false;
  bool raw = false;
};

struct TensorSummary {
  const proofs::TensorInfo* info;
  analysis::TensorStats stats;
};

std::vector<TensorSummary> summarise(const proofs::SafetensorsFile& file) {
  std::uint64_t total = 0;
  for (const auto& t : file.tensors()) total += t.nbytes();
  Progress progress("inspect " + file.path().string(), total);
  std::vector<TensorSummary> out;
  std::uint64_t before = 0;
  for (const auto& t : file.tensors()) {
    out.push_back({&t, analysis::compute_stats(file, t, [&](std::uint64_t done) { progress.update(before + done); })});
    before += t.nbytes();
  }
  return out;
}

std::vector<std::string> nonfinite_problems(const std::vector<TensorSummary>& tensors) {
  std::vector<std::string> problems;
  for (const auto& s : tensors) {
    if (s.stats.nan_count + s.stats.inf_count > 0) {
      problems.push_back(fmt::format("tensor '{}' has {} NaN and {} Inf values", s.info->name, s.stats.nan_count,
                                     s.stats.inf_count));
    }
  }
  return problems;
}

nlohmann::json to_json(const InspectOptions& options, const proofs::SafetensorsFile& file,
                       const analysis::Trace* trace, const std::vector<TensorSummary>& tensors,
                       const std::vector<std::string>& warnings) {
  nlohmann::json j;
  j["file"] = options.file;
  j["file_bytes"] = file.file_size();
  j["kind"] = trace ? "trace" : "safetensors";
  if (trace) {
    const auto& s = trace->shape();
    j["shape"] = {{"layers", s.num_layers}, {"heads", s.num_heads}, {"kv_heads", s.num_kv_heads},
                  {"tokens", s.num_tokens}, {"queries", s.num_queries}, {"head_dim", s.head_dim}};
    j["dtype"] = proofs::dtype_name(trace->dtype());
  }
  j["metadata"] = nlohmann::json::object();
  for (const auto& [k, v] : file.metadata()) j["metadata"][k] = v;
  j["tensors"] = nlohmann::json::array();
  for (const auto& s : tensors) {
    nlohmann::json t{{"name", s.info->name},          {"dtype", proofs::dtype_name(s.info->dtype)},
                     {"shape", s.info->shape},        {"numel", s.stats.numel},
                     {"nan", s.stats.nan_count},      {"inf", s.stats.inf_count}};
    const bool any = s.stats.finite_count > 0;
    t["min_abs"] = any ? nlohmann::json(s.stats.min_abs) : nlohmann::json(nullptr);
    t["max_abs"] = any ? nlohmann::json(s.stats.max_abs) : nlohmann::json(nullptr);
    t["mean_abs"] = any ? nlohmann::json(s.stats.mean_abs) : nlohmann::json(nullptr);
    j["tensors"].push_back(std::move(t));
  }
  j["warnings"] = warnings;
  return j;
}

void print_text(const InspectOptions& options, const proofs::SafetensorsFile& file, const analysis::Trace* trace,
                const std::vector<TensorSummary>& tensors) {
  std::string out = fmt::format("file       {} ({} bytes)\n", options.file, file.file_size());
  if (trace) {
    const auto& s = trace->shape();
    out += fmt::format("shape      {} layers, {} heads, {} kv heads, {} tokens, {} queries, head_dim {}\n",
                       s.num_layers, s.num_heads, s.num_kv_heads, s.num_tokens, s.num_queries, s.head_dim);
    out += fmt::format("dtype      {}\n", proofs::dtype_name(trace->dtype()));
  }
  out += "metadata\n";
  for (const auto& [k, v] : file.metadata()) out += fmt::format("  {:<16} {}\n", k, v);
  std::size_t width = 6;
  for (const auto& s : tensors) width = std::max(width, s.info->name.size());
  out += fmt::format("\n{:<{}}  {:<5} {:<16} {:>11} {:>11} {:>11} {:>6} {:>6}\n", "tensor", width, "dtype", "shape",
                     "min|x|", "max|x|", "mean|x|", "nan", "inf");
  for (const auto& s : tensors) {
    const auto cell = [&](double v) { return s.stats.finite_count ? fmt::format("{:.4g}", v) : std::string("-"); };
    out += fmt::format("{:<{}}  {:<5} {:<16} {:>11} {:>11} {:>11} {:>6} {:>6}\n", s.info->name, width,
                       proofs::dtype_name(s.info->dtype), proofs::format_shape(s.info->shape),
                       cell(s.stats.min_abs), cell(s.stats.max_abs), cell(s.stats.mean_abs), s.stats.nan_count,
                       s.stats.inf_count);
  }
  std::fputs(out.c_str(), stdout);
}

int run_inspect(const InspectOptions& options) {
  std::optional<analysis::Trace> trace;
  std::optional<proofs::SafetensorsFile> raw;
  if (options.raw) {
    raw.emplace(proofs::SafetensorsFile::open(options.file));
  } else {
    trace.emplace(analysis::Trace::open(options.file));
  }
  const proofs::SafetensorsFile& file = trace ? trace->file() : *raw;
  const auto tensors = summarise(file);
  const auto problems = nonfinite_problems(tensors);
  if (options.strict && !problems.empty()) {
    throw proofs::bad_input(options.file, problems.front() + (problems.size() > 1 ? fmt::format(" (and {} more tensors)", problems.size() - 1) : std::string()) + " (--strict)");
  }
  for (const auto& p : problems) {
    std::fprintf(stderr, "hnf-verify: warning: %s: %s\n", options.file.c_str(), proofs::printable_line(p).c_str());
  }
  if (options.json) {
    const std::string text = to_json(options, file, trace ? &*trace : nullptr, tensors, problems).dump(2) + "\n";
    std::fputs(text.c_str(), stdout);
  } else {
    print_text(options, file, trace ? &*trace : nullptr, tensors);
  }
  return 0;
}

}  // namespace

void register_inspect(CLI::App& app, int* exit_code) {
  auto options = std::make_shared<InspectOptions>();
  CLI::App* cmd = app.add_subcommand("inspect", "Summarise a trace: shape, metadata, |value| statistics, NaN/Inf");
  cmd->add_option("file", options->file, "Trace file (safetensors, docs/trace-format.md)")->required();
  cmd->add_flag("--json", options->json, "Print the summary as JSON");
  cmd->add_flag("--strict", options->strict, "Treat NaN or Inf values as an error (exit 3) instead of a warning");
  cmd->add_flag("--raw", options->raw, "Accept any safetensors file (skip the trace schema checks)");
  cmd->callback([options, exit_code] { *exit_code = run_inspect(*options); });
}

}  // namespace hnf::verify::cli
