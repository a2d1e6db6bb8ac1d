#include "hnf/proofs/error.h"

#include <string>

namespace hnf::proofs {

Error bad_input(std::string_view file, std::string_view problem) {
  std::string message(file);
  message += ": ";
  message += problem;
  return Error(ErrorKind::kBadInput, message);
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
