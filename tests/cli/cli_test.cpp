// The hnf-verify binary as a user runs it: exit codes, one-line errors, no partial output.
#include <doctest/doctest.h>

#include <cctype>
#include <cmath>
#include <set>
#include <sstream>
#include <vector>
#include <nlohmann/json.hpp>

#include "hnf/analysis/tensor_stats.h"
#include "hnf/analysis/trace.h"
#include "run_cli.h"
#include "small_trace.h"
#include "test_files.h"

using hnf::testing::raw_safetensors;
using hnf::testing::read_file;
using hnf::testing::SmallTrace;
using hnf::testing::contains;
using hnf::testing::hnf_verify;
using hnf::testing::quote;
using Run = hnf::testing::CliRun;
using hnf::testing::TempDir;
using hnf::testing::write_file;

namespace {

std::size_t line_count(const std::string& text) { return static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n')); }

const std::filesystem::path kExample = std::filesystem::path(HNF_SOURCE_DIR) / "examples" / "tiny-trace.safetensors";

// A bad input: exit 3, nothing on stdout, exactly one line on stderr naming file and problem.
void expect_bad_input(const Run& run, const std::string& file, const std::string& problem) {
  CHECK(run.exit_code == 3);
  CHECK(run.out.empty());
  CHECK(line_count(run.err) == 1);
  CHECK_MESSAGE(contains(run.err, file + ": "), run.err);
  CHECK_MESSAGE(contains(run.err, problem), run.err);
}

}  // namespace

TEST_CASE("help exists for the tool and every subcommand") {
  for (const char* args : {"--help", "inspect --help", "synth-trace --help", "trace --help", "eval --help",
                           "attention --help", "tokenize --help"}) {
    CAPTURE(args);
    const Run run = hnf_verify(args);
    CHECK(run.exit_code == 0);
    CHECK(contains(run.out, "Usage:"));
  }
  CHECK(contains(hnf_verify("--version").out, "hnf-verify "));
}

// docs/interfaces.md is the one table of the tool's interfaces: every long flag a subcommand's
// --help prints must be in a row of that subcommand.
TEST_CASE("every flag of every subcommand is in docs/interfaces.md") {
  const std::string table = read_file(std::filesystem::path(HNF_SOURCE_DIR) / "docs" / "interfaces.md");
  std::vector<std::string> rows;  // the CLI table's rows
  for (std::size_t at = 0, end; (end = table.find('\n', at)) != std::string::npos; at = end + 1) {
    const std::string line = table.substr(at, end - at);
    if (line.starts_with("| ")) rows.push_back(line);
  }
  int flags = 0;
  for (const char* sub : {"inspect", "synth-trace", "attention", "tokenize", "trace", "eval", "analyze", "check", "keygen",
                          "report", "gate", "bench quality"}) {
    const Run help = hnf_verify(std::string(sub) + " --help");
    REQUIRE(help.exit_code == 0);
    // Option lines start (after spaces) with "-x,--name" or "--name"; descriptions may name
    // other commands' flags and are not read.
    std::set<std::string> listed;
    std::istringstream lines(help.out);
    for (std::string line; std::getline(lines, line);) {
      const std::size_t start = line.find_first_not_of(' ');
      if (start == std::string::npos || line[start] != '-') continue;
      std::istringstream names(line.substr(start, line.find(' ', start) - start));
      for (std::string name; std::getline(names, name, ',');) {
        if (name.starts_with("--")) listed.insert(name);
      }
    }
    listed.erase("--help");
    for (const auto& flag : listed) {
      bool found = false;
      for (const auto& row : rows) {
        const std::string first = row.substr(2, row.find(" |", 2) - 2);  // "eval, report, gate, check"
        const bool names_sub = first == sub || first.starts_with(std::string(sub) + ",") ||
                               contains(first, std::string(", ") + sub);
        found = found || (names_sub && contains(row, "`" + flag));
      }
      const std::string missing = std::string(sub) + " " + flag + " is not in docs/interfaces.md";
      CHECK_MESSAGE(found, missing);
      ++flags;
    }
  }
  CHECK(flags > 80);  // the parse found the flags (a broken parse would check nothing)
}

TEST_CASE("usage errors exit 3") {
  CHECK(hnf_verify("").exit_code == 3);
  CHECK(hnf_verify("frobnicate").exit_code == 3);
  CHECK(hnf_verify("inspect").exit_code == 3);
  const Run run = hnf_verify("inspect --bogus " + quote(kExample));
  CHECK(run.exit_code == 3);
  CHECK(contains(run.err, "--bogus"));
}

TEST_CASE("inspect summarises the bundled example") {
  const Run run = hnf_verify("inspect " + quote(kExample));
  REQUIRE(run.exit_code == 0);
  CHECK(run.err.empty());
  CHECK(contains(run.out, "shape      2 layers, 4 heads, 2 kv heads, 32 tokens, 8 queries, head_dim 64"));
  CHECK(contains(run.out, "layers.1.k_pre_rope"));
  CHECK(contains(run.out, "query_positions"));
}

TEST_CASE("inspect --json reports the same statistics the library computes") {
  const Run run = hnf_verify("inspect --json " + quote(kExample));
  REQUIRE(run.exit_code == 0);
  const auto j = nlohmann::json::parse(run.out);
  CHECK(j["kind"] == "trace");
  CHECK(j["shape"]["layers"] == 2);
  CHECK(j["shape"]["queries"] == 8);
  CHECK(j["dtype"] == "F16");
  CHECK(j["metadata"]["format"] == "hnf-trace");
  const auto trace = hnf::analysis::Trace::open(kExample);
  REQUIRE(j["tensors"].size() == trace.file().tensors().size());
  for (const auto& t : j["tensors"]) {
    const auto* info = trace.file().find(t["name"].get<std::string>());
    REQUIRE(info != nullptr);
    const auto stats = hnf::analysis::compute_stats(trace.file(), *info);
    CHECK(t["max_abs"].get<double>() == stats.max_abs);
    CHECK(t["mean_abs"].get<double>() == stats.mean_abs);
    CHECK(t["nan"] == 0);
  }
}

TEST_CASE("every bad input gives exit 3 and one line naming the file and the problem") {
  TempDir dir;
  const auto path = dir / "bad.safetensors";
  const std::string tensor8 = R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  auto inspect_raw = [&](const std::string& bytes) {
    write_file(path, bytes);
    return hnf_verify("inspect --raw " + quote(path));
  };
  SUBCASE("missing file") { expect_bad_input(hnf_verify("inspect " + quote(dir / "nope.safetensors")), (dir / "nope.safetensors").string(), "cannot open"); }
  SUBCASE("empty file") { expect_bad_input(inspect_raw(""), path.string(), "file is empty"); }
  SUBCASE("header length larger than the file") {
    expect_bad_input(inspect_raw(raw_safetensors(tensor8, std::string(8, '\0'), 1 << 20)), path.string(), "is larger than the");
  }
  SUBCASE("header not JSON") { expect_bad_input(inspect_raw(raw_safetensors("{\"t\": [", "")), path.string(), "header is not valid JSON"); }
  SUBCASE("unknown dtype") {
    expect_bad_input(inspect_raw(raw_safetensors(R"({"t":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}})", std::string(8, '\0'))),
                     path.string(), "unsupported dtype 'Q4'");
  }
  SUBCASE("shape size does not match data_offsets") {
    expect_bad_input(inspect_raw(raw_safetensors(R"({"t":{"dtype":"F16","shape":[2,3],"data_offsets":[0,8]}})", std::string(8, '\0'))),
                     path.string(), "needs 12 bytes but data_offsets [0, 8] span 8");
  }
  SUBCASE("overlapping offsets") {
    expect_bad_input(inspect_raw(raw_safetensors(R"({"a":{"dtype":"U8","shape":[6],"data_offsets":[0,6]},"b":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}})", std::string(8, '\0'))),
                     path.string(), "overlap");
  }
  SUBCASE("out-of-range offsets") {
    expect_bad_input(inspect_raw(raw_safetensors(R"({"t":{"dtype":"U8","shape":[9],"data_offsets":[0,9]}})", std::string(8, '\0'))),
                     path.string(), "beyond the data section of 8 bytes");
  }
  SUBCASE("header over 100 MB") {
    expect_bad_input(inspect_raw(raw_safetensors(tensor8, std::string(8, '\0'), 150'000'000)), path.string(),
                     "header length 150000000 bytes exceeds the limit of 100000000 bytes");
  }
  SUBCASE("trace missing a layer") {
    SmallTrace s;
    s.layers = 3;
    s.skip = [](const std::string& n) { return n.starts_with("layers.2."); };
    hnf::testing::write_small_trace(path, s);
    expect_bad_input(hnf_verify("inspect " + quote(path)), path.string(), "trace is missing layer 2");
  }
  SUBCASE("trace with mismatched head counts") {
    SmallTrace s;
    s.reshape = [](const std::string& n, std::vector<std::int64_t> shape) {
      if (n == "layers.1.q") shape[0] = 2;
      return shape;
    };
    hnf::testing::write_small_trace(path, s);
    expect_bad_input(hnf_verify("inspect " + quote(path)), path.string(), "layer 1 has 2 query heads but layer 0 has 4");
  }
  SUBCASE("a model checkpoint is not a trace") {
    write_file(path, raw_safetensors(tensor8, std::string(8, '\0')));
    expect_bad_input(hnf_verify("inspect " + quote(path)), path.string(), "not an hnf trace");
  }
}

TEST_CASE("NaN or Inf in a trace is an error with --strict and a warning otherwise") {
  TempDir dir;
  const auto path = dir / "nan.safetensors";
  SmallTrace s;
  s.value = [](const std::string& name, std::uint64_t i) {
    if (name == "layers.1.k" && i == 2) return NAN;
    if (name == "layers.1.k" && i == 9) return INFINITY;
    return 1.0f;
  };
  hnf::testing::write_small_trace(path, s);
  expect_bad_input(hnf_verify("inspect --strict " + quote(path)), path.string(),
                   "tensor 'layers.1.k' has 1 NaN and 1 Inf values (--strict)");
  const Run lenient = hnf_verify("inspect " + quote(path));
  CHECK(lenient.exit_code == 0);
  CHECK(line_count(lenient.err) == 1);
  CHECK(contains(lenient.err, "warning: " + path.string() + ": tensor 'layers.1.k' has 1 NaN and 1 Inf values"));
  const Run json = hnf_verify("inspect --json " + quote(path));
  CHECK(json.exit_code == 0);
  CHECK(nlohmann::json::parse(json.out)["warnings"].size() == 1);
}

TEST_CASE("synth-trace writes a valid trace atomically and refuses bad arguments") {
  TempDir dir;
  const auto out = dir / "s.safetensors";
  CHECK(hnf_verify("synth-trace --out " + quote(out) + " --layers 3 --tokens 17 --query-stride 5").exit_code == 0);
  const Run inspected = hnf_verify("inspect --strict --json " + quote(out));
  REQUIRE(inspected.exit_code == 0);
  const auto j = nlohmann::json::parse(inspected.out);
  CHECK(j["shape"]["layers"] == 3);
  CHECK(j["shape"]["tokens"] == 17);
  CHECK(j["shape"]["queries"] == 4);  // positions 1, 6, 11, 16

  const auto missing = dir / "no-dir" / "s.safetensors";
  expect_bad_input(hnf_verify("synth-trace --out " + quote(missing)), missing.string(), "cannot create");
  CHECK(!std::filesystem::exists(missing.parent_path()));
  const Run bad_dtype = hnf_verify("synth-trace --dtype I8 --out " + quote(dir / "x.safetensors"));
  expect_bad_input(bad_dtype, "--dtype", "'I8' is not F32, F16 or BF16");
  const Run bad_heads = hnf_verify("synth-trace --heads 3 --kv-heads 2 --out " + quote(dir / "x.safetensors"));
  expect_bad_input(bad_heads, (dir / "x.safetensors").string(), "heads must be a multiple of kv heads");
  const auto entries = std::distance(std::filesystem::directory_iterator(dir.path()), {});
  CHECK(entries == 1);  // s.safetensors only: failed runs left nothing behind
  CHECK(!std::filesystem::exists(dir / "x.safetensors"));
  CHECK(!std::filesystem::exists(dir / "x.safetensors.partial"));
}

TEST_CASE("analyze --help lists the budget options") {
  const Run run = hnf_verify("analyze --help");
  CHECK(run.exit_code == 0);
  CHECK(contains(run.out, "Usage:"));
  CHECK(contains(run.out, "--eps"));
  CHECK(contains(run.out, "--bits"));
  CHECK(contains(run.out, "--map"));
}

TEST_CASE("analyze writes analysis.json and exits by feasibility") {
  TempDir dir;
  const auto out = dir / "analysis.json";
  const Run run = hnf_verify("analyze " + quote(kExample) + " --eps 1e-3 --out " + quote(out));
  REQUIRE(std::filesystem::exists(out));
  CHECK(!std::filesystem::exists(dir / "analysis.json.partial"));
  const auto j = nlohmann::json::parse(read_file(out));
  CHECK(j["format"] == "hnf-analysis");
  CHECK(j["options"]["eps"] == 1e-3);
  CHECK(j["shape"]["tokens"] == 32);
  CHECK(j["heads"].size() == 4);
  for (const auto& h : j["heads"]) CHECK(h["positions"]["kappa"].size() == 32);
  CHECK(run.exit_code == (j["feasible"].get<bool>() ? 0 : 1));
  CHECK(run.err.empty());
  CHECK(contains(run.out, j["feasible"].get<bool>() ? "met" : "INFEASIBLE"));
  CHECK(contains(run.out, "wrote " + out.string()));
  if (j["feasible"].get<bool>()) {
    for (const auto& h : j["heads"])
      for (const auto& q : h["queries"]) CHECK(q["s1"].get<double>() <= 1e-3);
  }
  // --json prints the same document (up to the timing).
  const Run json = hnf_verify("analyze " + quote(kExample) + " --eps 1e-3 --json");
  CHECK(json.exit_code == run.exit_code);
  auto printed = nlohmann::json::parse(json.out);
  auto written = j;
  printed.erase("seconds");
  written.erase("seconds");
  CHECK(printed == written);
}

TEST_CASE("analyze: bad arguments exit 3 with one line and write nothing") {
  TempDir dir;
  const auto out = dir / "analysis.json";
  const std::string common = "analyze " + quote(kExample) + " --out " + quote(out) + " ";
  SUBCASE("eps 0") { expect_bad_input(hnf_verify(common + "--eps 0"), "--eps", "must be a positive finite number"); }
  SUBCASE("eps negative") { expect_bad_input(hnf_verify(common + "--eps -1"), "--eps", "must be a positive finite number"); }
  SUBCASE("eps and bits together") {
    // CLI11's ExcludesError is a ParseError: main maps every ParseError to exit 3.
    const Run run = hnf_verify(common + "--eps 1 --bits 4");
    CHECK(run.exit_code == 3);
    CHECK(run.out.empty());
    CHECK(line_count(run.err) == 1);
    CHECK_MESSAGE(contains(run.err, "--eps excludes --bits"), run.err);
  }
  SUBCASE("neither eps nor bits") { expect_bad_input(hnf_verify(common), "analyze", "give --eps or --bits"); }
  SUBCASE("block 20") { expect_bad_input(hnf_verify(common + "--eps 1e-3 --block 20"), "--block", "must be 16, 32 or 64"); }
  SUBCASE("unknown model") {
    expect_bad_input(hnf_verify(common + "--eps 1e-3 --model foo"), "--model", "must be rms or bound, not 'foo'");
  }
  SUBCASE("per-layer budgets of the wrong count") {
    expect_bad_input(hnf_verify(common + "--eps 1e-3 --layer-eps 0.1"), "--layer-eps",
                     "gives 1 budgets for a trace of 2 layers");
  }
  SUBCASE("a per-layer budget that is not positive") {
    expect_bad_input(hnf_verify(common + "--eps 1e-3 --layer-eps 0.1,0"), "--layer-eps",
                     "every budget must be a positive finite number");
  }
  SUBCASE("unknown map format") {
    expect_bad_input(hnf_verify(common + "--eps 1e-3 --map nope"), "--map", "unknown format 'nope'");
  }
  SUBCASE("unknown value format") {
    expect_bad_input(hnf_verify(common + "--eps 1e-3 --map int4-d32,int9-d32"), "--map", "unknown format 'int9-d32'");
  }
  SUBCASE("per-channel values") {
    expect_bad_input(hnf_verify(common + "--eps 1e-3 --map int4-d32,int2-t16"), "--map", "'int2-t16' is offered for keys only");
  }
  SUBCASE("missing trace") {
    const auto missing = dir / "missing.safetensors";
    expect_bad_input(hnf_verify("analyze " + quote(missing) + " --eps 1e-3 --out " + quote(out)), missing.string(),
                     "cannot open");
  }
  CHECK(!std::filesystem::exists(out));
  CHECK(!std::filesystem::exists(dir / "analysis.json.partial"));
}

TEST_CASE("analyze --map evaluates a given uniform map") {
  TempDir dir;
  const auto out = dir / "map.json";
  const Run run = hnf_verify("analyze " + quote(kExample) + " --eps 10 --map int4-d32 --out " + quote(out));
  REQUIRE(std::filesystem::exists(out));
  const auto j = nlohmann::json::parse(read_file(out));
  CHECK(run.exit_code == (j["feasible"].get<bool>() ? 0 : 1));
  CHECK(j["allocated"] == false);
  for (const auto& h : j["heads"]) {
    CHECK(h["map_source"] == "given");
    CHECK(h["key_formats"] == std::vector<std::string>{"int4-d32", "int4-d32"});  // 32 tokens, blocks of 16
    CHECK(h["value_formats"] == std::vector<std::string>{"int4-d32", "int4-d32"});
  }
  // int4 codes plus one scale and zero point per 32 channels, plus a format id byte per unit.
  CHECK(j["bits_per_element"].get<double>() == doctest::Approx(5.0 + 8.0 * 4.0 / (32.0 * 64.0 * 2.0)));
  CHECK(contains(run.out, "a given map"));

  // Keys per channel, values per token.
  const Run kivi = hnf_verify("analyze " + quote(kExample) + " --eps 10 --map int2-t16,int2-d32 --json");
  REQUIRE((kivi.exit_code == 0 || kivi.exit_code == 1));
  const auto k = nlohmann::json::parse(kivi.out);
  CHECK(k["heads"][0]["key_formats"][0] == "int2-t16");
  CHECK(k["heads"][0]["value_formats"][0] == "int2-d32");
}

TEST_CASE("analyze: an unreachable eps exits 1 and says INFEASIBLE") {
  TempDir dir;
  const auto out = dir / "analysis.json";
  const Run run = hnf_verify("analyze " + quote(kExample) + " --eps 1e-15 --out " + quote(out));
  CHECK(run.exit_code == 1);
  CHECK(run.err.empty());
  CHECK(contains(run.out, "INFEASIBLE"));
  CHECK(contains(run.out, "the all-fp16 map needs eps >= "));
  // The report is still written: it says where the budget fails.
  REQUIRE(std::filesystem::exists(out));
  const auto j = nlohmann::json::parse(read_file(out));
  CHECK(j["feasible"] == false);
  CHECK(j["min_feasible_eps"].get<double>() > 1e-15);
  CHECK(!j["infeasible"].empty());
}
