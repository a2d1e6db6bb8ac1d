// hnf-verify attention: per layer, the attention mass the recorded queries of a trace put on
// the first position and on the most recent positions (the structure KV quantization meets).
#include <fmt/format.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "hnf/analysis/attention_stats.h"
#include "hnf/proofs/error.h"
#include "interrupt.h"

namespace hnf::verify::cli {
namespace {

struct AttentionOptions {
  std::string file;
  std::int64_t recent = 64;
  bool json = false;
};

int run_attention(const AttentionOptions& o) {
  if (o.recent < 1) throw proofs::bad_input("--recent", "must be at least 1");
  // attention_stats has no cancellation point: a signal ends the command at once until it prints.
  InterruptGuard interrupt_guard(OnInterrupt::kExitAtOnce);
  const auto trace = analysis::Trace::open(o.file);
  const auto stats = analysis::attention_stats(trace, o.recent);
  interrupt_guard.outputs_follow();
  if (o.json) {
    nlohmann::json j{{"file", o.file}, {"recent", o.recent}, {"layers", nlohmann::json::array()}};
    for (const auto& l : stats) {
      j["layers"].push_back({{"layer", l.layer}, {"first_token_mass", l.first_token_mass},
                             {"recent_mass", l.recent_mass}, {"max_weight", l.max_weight}, {"queries", l.queries},
                             {"output_norm", {{"p10", l.output_norm_p10}, {"median", l.output_norm_median}, {"p90", l.output_norm_p90}}}});
    }
    std::fputs((j.dump(2) + "\n").c_str(), stdout);
    return 0;
  }
  std::string out = fmt::format("{}: mean attention mass over {} (head, query) pairs per layer\n", o.file,
                                stats.empty() ? 0 : stats.front().queries);
  out += fmt::format("{:>5}  {:>14}  {:>16}  {:>14}  {:>24}\n", "layer", "first token", fmt::format("last {} tokens", o.recent),
                     "largest weight", "||o|| p10 / median / p90");
  for (const auto& l : stats) {
    out += fmt::format("{:>5}  {:>14.4f}  {:>16.4f}  {:>14.4f}  {:>24}\n", l.layer, l.first_token_mass, l.recent_mass, l.max_weight,
                       fmt::format("{:.3g} / {:.3g} / {:.3g}", l.output_norm_p10, l.output_norm_median, l.output_norm_p90));
  }
  std::fputs(out.c_str(), stdout);
  return 0;
}

}  // namespace

void register_attention(CLI::App& app, int* exit_code) {
  auto options = std::make_shared<AttentionOptions>();
  CLI::App* cmd = app.add_subcommand("attention", "Per layer: attention mass on the first token and on the most recent tokens");
  cmd->add_option("file", options->file, "Trace file")->required();
  cmd->add_option("--recent", options->recent, "Size of the recent window (query's own position included)")->capture_default_str();
  cmd->add_flag("--json", options->json, "Print as JSON");
  cmd->callback([options, exit_code] { *exit_code = run_attention(*options); });
}

}  // namespace hnf::verify::cli
