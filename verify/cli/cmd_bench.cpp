// hnf-verify bench quality: every KV-cache method of the comparison (fp16, uniform integer
// formats, KIVI-style, H2O-style eviction, our curvature allocation at storage budgets, our
// certified allocation at error budgets) on the same model, windows and byte counting, on
// prose, code and dialogue text; writes quality.md, quality.csv and PNG plots (docs/quality.md).
#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "commands.h"
#include "hnf/analysis/analyze.h"
#include "hnf/analysis/witnesses.h"
#include "guard_prediction.h"
#include "hnf/analysis/policy_allocation.h"
#include "hnf/baselines/methods.h"
#include "hnf/proofs/certificate.h"
#include "hnf/proofs/error.h"
#include "hnf/proofs/sha256.h"
#include "hnf/proofs/write_file.h"
#include "hnf/reports/quality_report.h"
#include "hnf/reports/text.h"
#include "hnf/runtime/evaluate.h"
#include "hnf/runtime/model_dir.h"
#include "progress.h"
#include "trace_writer.h"
#ifdef HNF_HAVE_Z3
#include "hnf/verify/certify.h"
#endif

namespace hnf::verify::cli {
namespace {

namespace fs = std::filesystem;

struct QualityOptions {
  std::string model;
  std::string prose, code, dialogue;  // eval texts (defaults depend on --quick)
  std::string calibration = "examples/wikitext-2-valid-passage.txt";
  std::int64_t tokens = 0;  // per genre; 0: the mode's default
  runtime::EvalOptions eval;
  std::vector<double> budgets{2.0, 2.5, 3.0, 4.0};
  std::vector<std::string> eps;  // certified allocations; default depends on --quick
  std::string out;               // default depends on --quick
  std::string work = ".cache/bench-quality";
  std::string readme;            // replace the marked table in this file
  bool quick = false;
  // Which recorded queries of the calibration trace the allocations weigh (analyze's options).
  std::int64_t last_queries = 32;
  std::int64_t query_stride = 0;
  std::string objective = "bound";
};

// The analysis settings every allocation of the run uses (curvature and certified alike).
analysis::AnalysisOptions allocation_options(const QualityOptions& o) {
  analysis::AnalysisOptions a;
  a.last_queries = o.last_queries;
  a.query_stride = o.query_stride;
  a.model = o.objective;
  return a;
}

// Full run: 31 windows, all of the full context (1023 + 30 strides of 512 tokens with the
// defaults), so that every cache is measured at the length its budget was set for.
constexpr std::int64_t kFullStrides = 30;

void apply_mode_defaults(QualityOptions& o) {
  auto set = [](std::string& field, const char* value) {
    if (field.empty()) field = value;
  };
  if (o.quick) {
    set(o.prose, "examples/wikitext-2-test-passage.txt");
    set(o.code, "examples/code-eval-passage.txt");
    set(o.dialogue, "examples/dialogue-eval-passage.txt");
    set(o.out, ".cache/bench-quality/quick");
    if (o.eps.empty()) o.eps = {"1"};
    if (o.tokens == 0) o.tokens = o.eval.context - 1;  // one window per genre
  } else {
    set(o.prose, ".cache/corpora/prose/wikitext2-test.txt");
    set(o.code, ".cache/corpora/code/eval.txt");
    set(o.dialogue, ".cache/corpora/dialogue/eval.txt");
    set(o.out, "reports");
    if (o.eps.empty()) o.eps = {"0.1", "0.25", "0.5", "1", "2", "4"};
    if (o.tokens == 0) o.tokens = o.eval.context - 1 + kFullStrides * o.eval.stride;
  }
}

// The command that reproduces this run, every setting explicit.
std::string command_line(const QualityOptions& o) {
  using reports::shell_quote;
  std::string budgets, eps;
  for (const double b : o.budgets) budgets += (budgets.empty() ? "" : ",") + fmt::format("{:g}", b);
  for (const auto& e : o.eps) eps += (eps.empty() ? "" : ",") + e;
  std::string cmd = "hnf-verify bench quality --model " + shell_quote(o.model) + " --prose " + shell_quote(o.prose) +
                    " --code " + shell_quote(o.code) + " --dialogue " + shell_quote(o.dialogue) + " --calibration " +
                    shell_quote(o.calibration) +
                    fmt::format(" --tokens {} --ctx {} --stride {} --budgets {} --eps {}", o.tokens, o.eval.context,
                                o.eval.stride, budgets, eps) +
                    fmt::format(" --last-queries {} --query-stride {} --objective {}", o.last_queries, o.query_stride,
                                shell_quote(o.objective)) +
                    " --out " + shell_quote(o.out) + " --work " + shell_quote(o.work);
  if (!o.readme.empty()) cmd += " --readme " + shell_quote(o.readme);
  return cmd;
}

// stdout of a shell command, trimmed; empty when it fails.
std::string command_output(const std::string& command) {
  std::string out;
  if (FILE* pipe = popen((command + " 2>/dev/null").c_str(), "r")) {
    char buffer[256];
    while (std::fgets(buffer, sizeof buffer, pipe) != nullptr) out += buffer;
    if (pclose(pipe) != 0) return {};
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

std::string git_commit() {
  const std::string head = command_output("git rev-parse HEAD");
  if (head.empty()) return "unknown";
  // Tracked changes only: the run's own outputs and caches are not the code that made them.
  return command_output("git status --porcelain --untracked-files=no").empty() ? head : head + "-dirty";
}

std::string machine_line() {
  std::string cpu = "unknown CPU";
  std::ifstream info("/proc/cpuinfo");
  for (std::string line; std::getline(info, line);) {
    if (line.rfind("model name", 0) == 0 && line.find(':') != std::string::npos) {
      cpu = line.substr(line.find(':') + 2);
      break;
    }
  }
  const std::string os = command_output("uname -sr");
  return fmt::format("{}, {} hardware threads, {}", cpu, std::thread::hardware_concurrency(), os.empty() ? "unknown OS" : os);
}

std::string utc_now() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buffer[32];
  std::strftime(buffer, sizeof buffer, "%Y-%m-%d %H:%M UTC", &tm);
  return buffer;
}

void log(const std::string& line) { std::fprintf(stderr, "bench quality: %s\n", line.c_str()); }

// A method that cannot run (on any genre): a row per genre saying why.
struct Unavailable {
  std::string name, family, setting;
  std::optional<double> budget_bits;
  std::string reason;
};

struct MethodSet {
  std::vector<baselines::Method> methods;
  // Methods whose stored rows depend on the step (certified policies: ages, migrations): run
  // token by token, each query at its own step, against an fp16 cache run the same way.
  std::vector<baselines::Method> decode_methods;
  std::vector<Unavailable> unavailable;
};

void add_uniform(MethodSet& set, std::int64_t head_dim) {
  for (const int bits : {8, 4, 2}) {
    for (const int group : {32, 64, 128}) {
      if (group > head_dim || head_dim % group != 0) {
        set.unavailable.push_back({fmt::format("int{}-d{}", bits, group), "uniform",
                                   fmt::format("K and V int{}, per-token groups of {} channels", bits, group), std::nullopt,
                                   fmt::format("groups of {} channels do not fit head_dim {}", group, head_dim)});
        continue;
      }
      set.methods.push_back(baselines::uniform_method(bits, group));
    }
  }
}

// One error-budget (eps-mode) allocation of the calibration trace.
struct Allocation {
  double eps = 0.0;
  double bits = 0.0;  // the map's bits per element, format ids included
  proofs::PrecisionMap map;
};

// Error-budget allocations of the calibration trace, each eps analysed once (the budgets'
// bisections share their brackets).
class Allocator {
 public:
  Allocator(const QualityOptions& o, std::string trace) : o_(o), trace_(std::move(trace)) {}

  const Allocation& at(double eps) {
    auto it = done_.find(eps);
    if (it != done_.end()) return it->second;
    analysis::AnalysisOptions options = allocation_options(o_);
    options.eps = eps;
    const auto result = analysis::analyze_trace(trace_, options);
    Allocation a{eps, 16.0 + 1.0, {}};  // an eps no map meets (not even fp16): more bits than any budget
    if (result.feasible) {
      a.map = analysis::precision_map(result);
      a.bits = proofs::map_bits_per_element(a.map) + baselines::map_id_bits_per_element(a.map);
    }
    return done_.emplace(eps, std::move(a)).first->second;
  }

 private:
  const QualityOptions& o_;
  std::string trace_;
  std::map<double, Allocation> done_;
};

constexpr double kLargestEps = 1e6;  // far beyond any attention output: every unit at its cheapest format

// The allocation for a storage budget: the error-budget allocation whose map is the largest
// with at most `budget` bits per element, its eps found by geometric bisection. Budgets go
// where the curvature says across layers and heads (analyze --bits gives every head the same
// size). nullopt when even the cheapest map (eps kLargestEps) exceeds the budget.
std::optional<Allocation> allocate_for_budget(Allocator& allocator, double budget) {
  constexpr double kStep = 4.0, kSmallest = 1e-6;
  constexpr int kBisections = 7;  // the eps bracket shrinks from 4x to 4^(1/128) = 1.011x
  if (allocator.at(kLargestEps).bits > budget) return std::nullopt;
  double hi = 1.0;  // bits(hi) <= budget
  while (allocator.at(hi).bits > budget) hi *= kStep;
  double lo = hi;  // bits(lo) > budget
  while (allocator.at(lo).bits <= budget) {
    hi = lo;
    if (lo < kSmallest) return allocator.at(hi);
    lo /= kStep;
  }
  for (int i = 0; i < kBisections; ++i) {
    const double mid = std::sqrt(lo * hi);
    (allocator.at(mid).bits <= budget ? hi : lo) = mid;
  }
  return allocator.at(hi);
}

void add_curvature(MethodSet& set, const QualityOptions& o, const std::string& trace) {
  Allocator allocator(o, trace);
  for (const double budget : o.budgets) {
    const std::string name = fmt::format("curvature {:g} bits", budget);
    const auto start = std::chrono::steady_clock::now();
    auto found = allocate_for_budget(allocator, budget);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (!found) {
      const std::string why =
          fmt::format("no map of the format vocabulary fits {:g} bits per element; the cheapest has {:.4f}", budget,
                      allocator.at(kLargestEps).bits);
      set.unavailable.push_back({name, "curvature", fmt::format("allocation for {:g} bits", budget), budget, why});
      log(fmt::format("{}: {}", name, why));
      continue;
    }
    log(fmt::format("{}: map of {:.4f} bits per element at eps {:.4g} ({:.1f} s)", name, found->bits, found->eps, seconds));
    set.methods.push_back(baselines::map_method(
        name, "curvature",
        fmt::format("eps {:.4g} (bisected to the budget): map {:.4f} bits, {} objective; not certified", found->eps,
                    found->bits, o.objective),
        budget, std::move(found->map)));
  }
}

#ifdef HNF_HAVE_Z3
// Certifies, writes the certificate to `file` and checks it against the model and trace with
// the witnesses re-derived (the runtime cache takes only re-derived or attested witnesses).
proofs::CheckReport certify_and_check(const std::string& trace, const CertifyOptions& options, const QualityOptions& o,
                                      const fs::path& file) {
  const auto result = certify(trace, options);
  proofs::write_text_atomically(file.string(), proofs::certificate_to_json(result.certificate));
  proofs::CheckOptions check;
  check.model_dir = o.model;
  check.trace = trace;
  check.recompute = [trace, model = o.model](const proofs::Certificate& c) {
    return analysis::recompute_witnesses(c, trace, std::filesystem::path(model));
  };
  return proofs::check_certificate(file, check, "hnf-verify " HNF_VERSION);
}

// Why a checked certificate builds no cache ("rejected: ...", "verdict ..."), or empty.
std::string not_certified(const proofs::CheckReport& report) {
  if (!report.problems.empty()) return "rejected: " + report.problems.front();
  return report.certified ? std::string() : "verdict " + report.verdict;
}

void add_certified(MethodSet& set, const QualityOptions& o, const std::string& trace) {
  for (const auto& eps_text : o.eps) {
    const std::string name = "certified eps " + eps_text;
    CertifyOptions options;
    options.eps = proofs::decimal_to_double_down(eps_text, "--eps");
    options.analysis = allocation_options(o);
    options.model_dir = o.model;
    options.tool_version = "hnf-verify " HNF_VERSION;
    const auto start = std::chrono::steady_clock::now();
    const fs::path file = fs::path(o.work) / ("certificate-eps-" + eps_text + ".json");
    auto report = certify_and_check(trace, options, o, file);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (const std::string why = not_certified(report); !why.empty()) {
      set.unavailable.push_back({name, "certified", "certify --eps " + eps_text, std::nullopt, why});
      log(fmt::format("{}: {}", name, why));
      continue;
    }
    const double bits = proofs::map_bits_per_element(report.certified->map());
    log(fmt::format("{}: certified, map of {:.4f} bits per element ({:.1f} s, {})", name, bits, seconds, file.string()));
    set.methods.push_back(baselines::certified_method(
        name, fmt::format("certify --eps {}: map {:.4f} bits, checked; runtime MixedKvCache", eps_text, bits),
        std::make_shared<const proofs::CertifiedPrecisionMap>(*std::move(report.certified))));
  }
}
// Policy rows: certify --policy auto --bits B (stochastic rounding; epsilon where 99.9 % of the
// calibration rows are guarded), the exact checker with re-derived witnesses, the runtime cache.
void add_policies(MethodSet& set, const QualityOptions& o, const std::string& trace) {
  for (const double budget : o.budgets) {
    const std::string name = fmt::format("policy {:g} bits", budget);
    const auto start = std::chrono::steady_clock::now();
    analysis::PolicyAllocationOptions allocation;
    allocation.bits = budget;
    CertifyOptions options;
    try {
      options.analysis.policy = analysis::allocate_policy(trace, allocation).policy;
    } catch (const proofs::Error& e) {
      set.unavailable.push_back({name, "policy", fmt::format("certify --policy auto --bits {:g}", budget), budget, e.what()});
      log(fmt::format("{}: {}", name, e.what()));
      continue;
    }
    const auto guard = calibrate_policy_guard(trace, *options.analysis.policy, options.analysis.dense_queries,
                                              options.analysis.beyond_stride);
    GuardedBudgets budgets = guarded_budgets(guard, 0.999);
    options.layer_eps = budgets.layer_eps;
    options.eps = *std::max_element(budgets.layer_eps.begin(), budgets.layer_eps.end());
    options.prediction = std::move(budgets.prediction);
    options.model_dir = o.model;
    options.tool_version = "hnf-verify " HNF_VERSION;
    const fs::path file = fs::path(o.work) / fmt::format("certificate-policy-{:g}-bits.json", budget);
    auto report = certify_and_check(trace, options, o, file);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (const std::string why = not_certified(report); !why.empty()) {
      set.unavailable.push_back({name, "policy", fmt::format("certify --policy auto --bits {:g}", budget), budget, why});
      log(fmt::format("{}: {}", name, why));
      continue;
    }
    const double bits = proofs::policy_bits_per_element(*report.certified->policy(), report.certified->map().tokens);
    log(fmt::format("{}: certified policy of {:.4f} bits per element at the calibration length ({:.1f} s, {})", name, bits,
                    seconds, file.string()));
    auto method = baselines::certified_method(
        name, fmt::format("certify --policy auto --bits {:g}: stochastic rounding, {:.4f} bits at {} tokens, checked; "
                          "runtime MixedKvCache, token-by-token decode", budget, bits, report.certified->map().tokens),
        std::make_shared<const proofs::CertifiedPrecisionMap>(*std::move(report.certified)));
    method.family = "policy";
    method.budget_bits = budget;
    set.decode_methods.push_back(std::move(method));
  }
}
#else
void add_policies(MethodSet& set, const QualityOptions& o, const std::string&) {
  for (const double budget : o.budgets) {
    set.unavailable.push_back({fmt::format("policy {:g} bits", budget), "policy",
                               fmt::format("certify --policy auto --bits {:g}", budget), budget,
                               "this hnf-verify was built without Z3 (-DHNF_ENABLE_Z3=OFF)"});
  }
}

void add_certified(MethodSet& set, const QualityOptions& o, const std::string&) {
  for (const auto& eps_text : o.eps) {
    set.unavailable.push_back({"certified eps " + eps_text, "certified", "certify --eps " + eps_text, std::nullopt,
                               "this hnf-verify was built without Z3 (-DHNF_ENABLE_Z3=OFF)"});
  }
}
#endif

MethodSet build_methods(const QualityOptions& o, const runtime::KvCacheShape& shape, const std::string& trace) {
  MethodSet set;
  set.methods.push_back(baselines::fp16_method());
  add_uniform(set, shape.head_dim);
  for (const int bits : {2, 4}) set.methods.push_back(baselines::kivi_method(bits));
  for (const double budget : o.budgets) set.methods.push_back(baselines::h2o_method(budget, o.eval.context, shape.head_dim));
  add_curvature(set, o, trace);
  add_certified(set, o, trace);
  add_policies(set, o, trace);
  return set;
}

reports::QualityRow unavailable_row(const std::string& genre, const Unavailable& u) {
  reports::QualityRow row;
  row.genre = genre;
  row.method = u.name;
  row.family = u.family;
  row.budget_bits = u.budget_bits;
  row.setting = u.setting;
  row.ran = false;
  row.error = u.reason;
  return row;
}

struct Genre {
  std::string name, path;
};

// Every method on one genre's text; appends one row per method (and per unavailable method).
reports::GenreText run_genre(const Genre& genre, const QualityOptions& o, const runtime::ModelDir& dir, MethodSet& set,
                             std::vector<reports::QualityRow>& rows) {
  const std::string text = runtime::read_text_file(genre.path);
  auto ids = dir.tokenizer.encode(text, genre.path);
  if (static_cast<std::int64_t>(ids.size()) > o.tokens) ids.resize(static_cast<std::size_t>(o.tokens));
  if (ids.size() < 2) throw proofs::bad_input(genre.path, "has fewer than 2 tokens");
  for (auto& m : set.methods) *m.meter = baselines::StorageMeter{};
  for (auto& m : set.decode_methods) *m.meter = baselines::StorageMeter{};
  const baselines::Method reference = baselines::fp16_method();
  const auto run = [&](const std::vector<baselines::Method>& methods, bool decode) {
    std::vector<runtime::CacheFactory> candidates;
    for (const auto& m : methods) candidates.push_back(m.make);
    log(fmt::format("{}: {} tokens of {}, {} methods against the fp16 cache{}", genre.name, ids.size(), genre.path,
                    methods.size(), decode ? " (token by token)" : ""));
    Progress progress("bench quality " + genre.name, 0);
    runtime::EvalOptions eval = o.eval;
    eval.decode = decode;
    return runtime::compare_caches(dir.model, ids, dir.tokenizer.bos_id(), eval, reference.make, candidates,
                                   [&](std::int64_t done, std::int64_t total) {
                                     progress.update(static_cast<std::uint64_t>(done), static_cast<std::uint64_t>(total));
                                   });
  };
  auto result = run(set.methods, false);
  const std::size_t prefill_methods = set.methods.size();
  std::vector<double> reference_perplexity(prefill_methods, result.reference.perplexity);
  if (!set.decode_methods.empty()) {
    const auto decoded = run(set.decode_methods, true);
    result.candidates.insert(result.candidates.end(), decoded.candidates.begin(), decoded.candidates.end());
    result.seconds.insert(result.seconds.end(), decoded.seconds.begin(), decoded.seconds.end());
    reference_perplexity.resize(prefill_methods + set.decode_methods.size(), decoded.reference.perplexity);
  }
  std::vector<const baselines::Method*> all;
  for (const auto& m : set.methods) all.push_back(&m);
  for (const auto& m : set.decode_methods) all.push_back(&m);
  const double fp16_perplexity = result.reference.perplexity;
  for (std::size_t i = 0; i < all.size(); ++i) {
    const auto& m = *all[i];
    const auto& c = result.candidates[i];
    reports::QualityRow row;
    row.genre = genre.name;
    row.method = m.name;
    row.family = m.family;
    row.budget_bits = m.budget_bits;
    row.setting = m.setting;
    row.tokens = result.reference.tokens;
    row.perplexity = c.perplexity;
    row.ppl_change_percent = 100.0 * (c.perplexity / reference_perplexity[i] - 1.0);
    row.mean_kl = c.mean_kl;
    row.top1_agreement = c.top1_agreement;
    row.bits_per_element = m.meter->bits_per_element();
    row.seconds = result.seconds[i];
    rows.push_back(row);
  }
  for (const auto& u : set.unavailable) rows.push_back(unavailable_row(genre.name, u));
  log(fmt::format("{}: fp16 perplexity {:.3f} over {} tokens ({} windows)", genre.name, fp16_perplexity,
                  result.reference.tokens, result.reference.windows));
  const auto bytes = std::as_bytes(std::span(text.data(), text.size()));
  return {.genre = genre.name, .path = genre.path, .sha256 = proofs::sha256_hex(bytes), .tokens = result.reference.tokens};
}

std::vector<std::string> method_notes(const QualityOptions& o) {
  return {
      "Every method is a KV cache behind the runtime's KvCache interface, run on the same windows (context " +
          std::to_string(o.eval.context) + ", stride " + std::to_string(o.eval.stride) +
          ") of the same token stream; KL and top-1 agreement are against the fp16 cache's next-token distributions.",
      "Bytes per element are measured on each window's final cache and averaged over windows: codes, fp16 scales and "
      "zero points, fp16/f32 elements held unquantized (KIVI's residual, staged per-channel groups), and each method's "
      "metadata (one format-id byte per allocation unit (block of positions) for K and for V of a precision map; H2O's fp32 accumulated "
      "score per kept position). Evicted positions count as elements the method represents.",
      "Uniform, KIVI-style, fp16 and curvature maps run in a dequantize-then-attend cache (PlanCache: stored values of "
      "the reference quantizer, rounded to fp32); certified maps run in the runtime's MixedKvCache, constructed from "
      "a certificate the exact checker accepted. H2O-style eviction and KIVI's residual window are simulated per query "
      "position, so one forward over a window reads what token-by-token decoding would.",
      "Allocations (curvature and certified) are made once, from a trace of the calibration text " + o.calibration +
          " (BOS and its first " + std::to_string(o.eval.context - 1) +
          " tokens), and applied unchanged to every genre: no method sees the evaluation text before it is scored.",
      "Curvature rows: the error-budget allocation (analyze --eps, objective " + o.objective +
          ") whose map is the largest within the storage budget, format ids included, its eps found by bisection; "
          "not certified. Certified rows: certify --eps with the same analysis settings and --model, then the exact "
          "checker; the certificates are in " + o.work + ".",
      "Policy rows (ours): certify --policy auto --bits B on the calibration trace (a precision policy: fp16 sink and "
      "recent pages, old pages' formats chosen per (layer, kv head, K or V); stochastic rounding; epsilon where 99.9 % "
      "of the calibration rows are guarded), checked with re-derived witnesses, run in the runtime's MixedKvCache token "
      "by token (each query at its own step), their KL against an fp16 cache run token by token too.",
      "H2O rows keep, per (layer, kv head), the positions a cache of the budget's bytes holds at " +
          std::to_string(o.eval.context) +
          " positions (half of them the most recent); shorter windows hold fewer. A method that cannot run says why in "
          "its row.",
  };
}

// Draws the PNG plots through gnuplot (gnuplot-nox) into a staging folder under `work` and
// returns their paths; bad input when gnuplot fails (before any report file is written).
std::vector<fs::path> draw_plots(const std::vector<reports::QualityRow>& rows, const fs::path& csv, const fs::path& work) {
  const fs::path staging = work / "plots";
  fs::create_directories(staging);
  const fs::path script = work / "quality.gnuplot";
  proofs::write_text_atomically(script.string(), reports::quality_gnuplot(rows, csv.string(), staging.string()));
  const std::string command = "gnuplot " + reports::shell_quote(script.string());
  if (std::system(command.c_str()) != 0) {
    throw proofs::bad_input("gnuplot", "could not draw the plots (" + command +
                                           "); install gnuplot-nox (scripts/setup.sh does)");
  }
  std::vector<fs::path> plots;
  for (const auto& name : reports::quality_plot_files(rows)) plots.push_back(staging / name);
  return plots;
}

// Moves the staged plots into out_dir; where the folders are on different file systems, copies
// through "<plot>.partial" and a rename, so a full disk leaves no half plot (a write failure).
void publish_plots(const std::vector<fs::path>& plots, const fs::path& out_dir) {
  for (const auto& plot : plots) {
    const fs::path destination = out_dir / plot.filename();
    std::error_code error;
    fs::rename(plot, destination, error);
    if (!error) continue;
    const fs::path partial = destination.string() + ".partial";
    error.clear();
    fs::copy_file(plot, partial, fs::copy_options::overwrite_existing, error);
    if (!error) fs::rename(partial, destination, error);
    if (error) {
      std::error_code ignored;
      fs::remove(partial, ignored);
      throw proofs::write_failed(destination.string(), "could not write: " + error.message());
    }
    fs::remove(plot, error);
  }
}

int run_quality(QualityOptions o) {
  apply_mode_defaults(o);
  if (o.tokens < 2) throw proofs::bad_input("--tokens", "must be at least 2");
  for (const auto* path : {&o.prose, &o.code, &o.dialogue, &o.calibration}) {
    if (!fs::is_regular_file(*path)) {
      throw proofs::bad_input(*path, o.quick || path == &o.calibration
                                         ? "not found"
                                         : "not found (build the corpora: bash scripts/corpora.sh)");
    }
  }
  if (command_output("command -v gnuplot").empty()) {
    throw proofs::bad_input("gnuplot", "not installed: the plots need it (apt-get install gnuplot-nox; scripts/setup.sh does)");
  }
  // A README without the table's markers fails now, not after the run.
  if (!o.readme.empty()) (void)reports::replace_marked_block(runtime::read_text_file(o.readme), "", o.readme);
  proofs::ensure_directory(o.out, "--out");
  proofs::ensure_directory(o.work, "--work");
  const auto start = std::chrono::steady_clock::now();
  const auto dir = runtime::load_model_dir(o.model);

  const std::string trace = (fs::path(o.work) / "calibration.safetensors").string();
  write_trace({.model = o.model, .text = o.calibration, .tokens = o.eval.context, .out = trace, .dtype = "F32"});
  MethodSet set = build_methods(o, dir.model.cache_shape(), trace);

  std::vector<reports::QualityRow> rows;
  reports::QualityHeader header;
  header.command = command_line(o);
  header.commit = git_commit();
  header.model_dir = o.model;
  header.model_sha256 = proofs::sha256_file_hex(fs::path(o.model) / "model.safetensors");
  header.tool_version = "hnf-verify " HNF_VERSION;
  header.machine = machine_line();
  header.date = utc_now();
  header.context = o.eval.context;
  header.stride = o.eval.stride;
  header.calibration = o.calibration + " (BOS and its first " + std::to_string(o.eval.context - 1) + " tokens), trace " + trace;
  header.notes = method_notes(o);
  for (const Genre& genre : {Genre{"prose", o.prose}, Genre{"code", o.code}, Genre{"dialogue", o.dialogue}}) {
    header.texts.push_back(run_genre(genre, o, dir, set, rows));
  }

  const fs::path csv = fs::path(o.out) / "quality.csv";
  const fs::path md = fs::path(o.out) / "quality.md";
  std::vector<std::pair<std::string, std::string>> files{{csv.string(), reports::quality_csv(rows)},
                                                         {md.string(), reports::quality_markdown(header, rows)}};
  if (!o.readme.empty()) {
    files.emplace_back(o.readme, reports::replace_marked_block(runtime::read_text_file(o.readme),
                                                               reports::quality_readme_table(rows), o.readme));
  }
  const auto plots = draw_plots(rows, csv, o.work);
  proofs::write_texts_atomically(files);
  publish_plots(plots, o.out);

  std::fputs(reports::quality_readme_table(rows).c_str(), stdout);
  for (const auto& t : reports::evaluate_quality_targets(rows)) {
    std::printf("target %-9s %s: %s (%s)\n", t.genre.c_str(), t.target.c_str(), t.met ? "met" : "NOT met", t.detail.c_str());
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("wrote %s, %s and %zu plots in %s (%.0f s)%s\n", md.string().c_str(), csv.string().c_str(),
              reports::quality_plot_files(rows).size(), o.out.c_str(), seconds,
              o.readme.empty() ? "" : (", and the table in " + o.readme).c_str());
  return 0;
}

std::vector<double> parse_budgets(const std::string& text) {
  std::vector<double> out;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) {
    std::size_t used = 0;
    double value = 0.0;
    try {
      value = std::stod(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != item.size() || item.empty() || !(value > 0.0) || value > 16.0) {
      throw proofs::bad_input("--budgets", "'" + item + "' is not a number of bits in (0, 16]");
    }
    out.push_back(value);
  }
  return out;
}

}  // namespace

void register_bench(CLI::App& app, int* exit_code) {
  CLI::App* bench = app.add_subcommand("bench", "Benchmarks (quality: every KV-cache method side by side)");
  bench->require_subcommand(1);
  auto options = std::make_shared<QualityOptions>();
  auto budgets = std::make_shared<std::string>("2,2.5,3,4");
  auto eps = std::make_shared<std::string>();
  CLI::App* cmd = bench->add_subcommand(
      "quality", "fp16, uniform INT8/4/2, KIVI-style, H2O-style and our curvature and certified allocations on prose, "
                 "code and dialogue: perplexity, KL, top-1 agreement, bytes per element; writes quality.md, quality.csv "
                 "and PNG plots");
  cmd->add_option("--model", options->model, "Model folder (config.json, model.safetensors, tokenizer.model)")->required();
  cmd->add_flag("--quick", options->quick,
                "Small run for CI: the committed passages in examples/, one window per genre, one certified epsilon, "
                "output in .cache/bench-quality/quick");
  cmd->add_option("--prose", options->prose, "Prose eval text (default: .cache/corpora/prose/wikitext2-test.txt)");
  cmd->add_option("--code", options->code, "Code eval text (default: .cache/corpora/code/eval.txt)");
  cmd->add_option("--dialogue", options->dialogue, "Dialogue eval text (default: .cache/corpora/dialogue/eval.txt)");
  cmd->add_option("--calibration", options->calibration,
                  "Text the allocations are made from (a trace of its first --ctx positions)")
      ->capture_default_str();
  cmd->add_option("--tokens", options->tokens, "Tokens evaluated per genre (default --ctx - 1 + 30 x --stride: 31 full windows; --quick: --ctx - 1)");
  cmd->add_option("--ctx", options->eval.context, "Tokens per window, BOS included")->capture_default_str();
  cmd->add_option("--stride", options->eval.stride, "New tokens scored per window")->capture_default_str();
  cmd->add_option("--budgets", *budgets, "Storage budgets in bits per element (curvature and H2O)")->capture_default_str();
  cmd->add_option("--eps", *eps, "Error budgets of the certified allocations, comma-separated (default 0.1,0.25,0.5,1,2,4; --quick: 1)");
  cmd->add_option("--last-queries", options->last_queries, "Allocations: weigh the newest N recorded queries of the calibration trace")
      ->capture_default_str();
  cmd->add_option("--query-stride", options->query_stride,
                  "Allocations: and every N-th recorded query (0: a stride giving about --last-queries more)")
      ->capture_default_str();
  cmd->add_option("--objective", options->objective, "Allocation objective: rms (predicted error) or bound (rigorous separable bound)")
      ->check(CLI::IsMember({"rms", "bound"}))
      ->capture_default_str();
  cmd->add_option("--out", options->out, "Report folder (default reports; --quick: .cache/bench-quality/quick)");
  cmd->add_option("--work", options->work, "Folder for the calibration trace, certificates and plot script")->capture_default_str();
  cmd->add_option("--readme", options->readme,
                  "Also replace the table between <!-- quality-table:begin --> and <!-- quality-table:end --> in this file");
  cmd->callback([options, budgets, eps, exit_code] {
    options->budgets = parse_budgets(*budgets);
    options->eps.clear();
    std::stringstream in(*eps);
    for (std::string item; std::getline(in, item, ',');) {
      (void)proofs::decimal_to_double_down(item, "--eps");  // bad input now, not after the calibration
      options->eps.push_back(item);
    }
    *exit_code = run_quality(*options);
  });
}

}  // namespace hnf::verify::cli
