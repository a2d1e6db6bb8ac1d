#include "hnf/proofs/json_limits.h"

#include <cmath>
#include <limits>
#include <system_error>

#include "hnf/proofs/error.h"
#include "hnf/proofs/read_file.h"

namespace hnf::proofs {
namespace {

using Json = nlohmann::json;

// nlohmann's messages start with "[json.exception.parse_error.101] "; the rest says where and why.
std::string without_exception_id(const char* what) {
  std::string text(what);
  if (text.starts_with("[json.exception.")) {
    const auto end = text.find("] ");
    if (end != std::string::npos) text.erase(0, end + 2);
  }
  return text;
}

}  // namespace

std::string read_regular_file(const std::filesystem::path& path, std::uint64_t max_bytes, std::string_view what) {
  // Checked before opening: opening a FIFO for reading waits for a writer, and a device such as
  // /dev/zero never ends. read_whole_file then refuses a file that changes while it is read.
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (ec) throw bad_input(path.string(), "cannot open " + std::string(what) + ": " + ec.message());
  if (!std::filesystem::is_regular_file(status)) {
    throw bad_input(path.string(), "is not a regular file (" + std::string(what) + " must be one)");
  }
  return read_whole_file(path, max_bytes);
}

Json parse_json(std::string_view text, std::string_view file, std::string_view what) {
  const std::string subject = what.empty() ? std::string("JSON") : std::string(what);
  const std::string prefix = what.empty() ? std::string() : std::string(what) + " is ";
  // nlohmann's parser is iterative, but the document it builds is walked recursively by dump()
  // and comparisons: a depth limit keeps every later walk shallow.
  const Json::parser_callback_t limit_depth = [&](int depth, Json::parse_event_t event, Json&) {
    if ((event == Json::parse_event_t::object_start || event == Json::parse_event_t::array_start) &&
        depth >= kMaxJsonDepth) {
      throw bad_input(file, subject + " nests arrays and objects deeper than " + std::to_string(kMaxJsonDepth) +
                                " levels");
    }
    return true;
  };
  try {
    return Json::parse(text.begin(), text.end(), limit_depth);
  } catch (const Json::parse_error& e) {
    throw bad_input(file, prefix + "not valid JSON: " + without_exception_id(e.what()));
  } catch (const Json::out_of_range&) {
    // 406: a number whose magnitude exceeds the largest double (e.g. 1e999).
    throw bad_input(file, subject + " has a number beyond the range of a double");
  }
}

Json read_json_file(const std::filesystem::path& path, std::uint64_t max_bytes, std::string_view what) {
  return parse_json(read_regular_file(path, max_bytes, what), path.string());
}

std::optional<std::int64_t> json_integer(const Json& value, std::int64_t min, std::int64_t max) noexcept {
  std::int64_t v = 0;
  if (value.is_number_unsigned()) {
    const auto u = value.get<std::uint64_t>();
    if (u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) return std::nullopt;
    v = static_cast<std::int64_t>(u);
  } else if (value.is_number_integer()) {
    v = value.get<std::int64_t>();
  } else {
    return std::nullopt;
  }
  if (v < min || v > max) return std::nullopt;
  return v;
}

std::optional<double> json_number(const Json& value, double min, double max) noexcept {
  if (!value.is_number()) return std::nullopt;
  const auto v = value.get<double>();
  if (!std::isfinite(v) || v < min || v > max) return std::nullopt;
  return v;
}

}  // namespace hnf::proofs
