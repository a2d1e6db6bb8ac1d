#include "hnf/proofs/error.h"

#include <string>

namespace hnf::proofs {

namespace {

Error error_about(ErrorKind kind, std::string_view file, std::string_view problem) {
  std::string message = printable_line(file, std::string_view::npos);
  message += ": ";
  message += printable_line(problem);
  return Error(kind, message);
}

bool is_utf8_continuation(char c) { return (static_cast<unsigned char>(c) & 0xc0) == 0x80; }

}  // namespace

std::string printable_line(std::string_view text, std::size_t max_bytes) {
  std::string cut_note;
  if (text.size() > max_bytes) {
    std::size_t keep = max_bytes;
    while (keep > 0 && is_utf8_continuation(text[keep])) --keep;  // back to the start of a character
    cut_note = "... (" + std::to_string(text.size() - keep) + " more bytes)";
    text = text.substr(0, keep);
  }
  std::string line;
  line.reserve(text.size() + cut_note.size());
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte == 0x7f) {
      static constexpr char kHex[] = "0123456789abcdef";
      line += "\\x";
      line += kHex[byte >> 4];
      line += kHex[byte & 0xf];
    } else {
      line += c;
    }
  }
  return line + cut_note;
}

Error bad_input(std::string_view file, std::string_view problem) { return error_about(ErrorKind::kBadInput, file, problem); }

Error write_failed(std::string_view file, std::string_view problem) {
  return error_about(ErrorKind::kWriteFailed, file, problem);
}

void assert_failed(const char* condition, const char* file, int line, std::string_view message) {
  std::string text = "internal error: assertion '";
  text += condition;
  text += "' failed at ";
  text += file;
  text += ':';
  text += std::to_string(line);
  if (!message.empty()) {
    text += ": ";
    text += message;
  }
  throw Error(ErrorKind::kInternal, text);
}

}  // namespace hnf::proofs
