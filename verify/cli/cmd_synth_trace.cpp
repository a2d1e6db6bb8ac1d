// hnf-verify synth-trace: a deterministic synthetic trace for tests, examples and I/O
// benchmarks (never for claims about model behaviour: its metadata says so).
#include <cstdio>
#include <string>

#include "commands.h"
#include "hnf/analysis/synthetic_trace.h"
#include "hnf/proofs/error.h"
#include "progress.h"

namespace hnf::verify::cli {
namespace {

struct SynthOptions {
  std::string out;
  std::string dtype = "F16";
  std::string pattern = "gaussian";
  analysis::SyntheticTraceSpec spec;
};

int run_synth_trace(const SynthOptions& options) {
  const auto dtype = proofs::parse_dtype(options.dtype);
  if (!dtype || !proofs::is_floating(*dtype))
    throw proofs::bad_input("--dtype", "'" + options.dtype + "' is not F32, F16 or BF16");
  const auto pattern = analysis::parse_synthetic_pattern(options.pattern);
  if (!pattern) {
    throw proofs::bad_input("--pattern", "'" + options.pattern +
                                             "' is not gaussian, uniform, equal-keys, spike, sinks, outliers or denormal");
  }
  analysis::SyntheticTraceSpec spec = options.spec;
  spec.dtype = *dtype;
  spec.pattern = *pattern;
  Progress progress("synth-trace " + options.out, static_cast<std::uint64_t>(spec.num_layers));
  analysis::write_synthetic_trace(options.out, spec,
                                  [&](std::int64_t layer) { progress.update(static_cast<std::uint64_t>(layer + 1)); });
  return 0;
}

}  // namespace

void register_synth_trace(CLI::App& app, int* exit_code) {
  auto options = std::make_shared<SynthOptions>();
  CLI::App* cmd = app.add_subcommand("synth-trace", "Write a deterministic synthetic trace (tests and I/O benchmarks only)");
  cmd->add_option("--out,-o", options->out, "Output trace file (written atomically)")->required();
  cmd->add_option("--layers", options->spec.num_layers, "Number of layers")->capture_default_str();
  cmd->add_option("--heads", options->spec.num_heads, "Query heads")->capture_default_str();
  cmd->add_option("--kv-heads", options->spec.num_kv_heads, "Key/value heads (divides --heads)")->capture_default_str();
  cmd->add_option("--tokens", options->spec.num_tokens, "Cached positions")->capture_default_str();
  cmd->add_option("--head-dim", options->spec.head_dim, "Head dimension (even)")->capture_default_str();
  cmd->add_option("--query-stride", options->spec.query_stride,
                  "Record every N-th position's query, ending at the last position")->capture_default_str();
  cmd->add_option("--dtype", options->dtype, "F32, F16 or BF16")->capture_default_str();
  cmd->add_option("--rope-theta", options->spec.rope_theta, "Rotary embedding base")->capture_default_str();
  cmd->add_option("--seed", options->spec.seed, "Generator seed")->capture_default_str();
  cmd->add_option("--pattern", options->pattern,
                  "Attention pattern: gaussian, or a pathological one: uniform (zero queries), equal-keys, spike (one "
                  "key at tokens/2), sinks (the first --sinks keys), outliers (keys at +-1e4), denormal (subnormal k, v)")
      ->capture_default_str();
  cmd->add_option("--sinks", options->spec.sinks, "Attention sinks for --pattern sinks")->capture_default_str();
  cmd->callback([options, exit_code] { *exit_code = run_synth_trace(*options); });
}

}  // namespace hnf::verify::cli
