#include "hnf/proofs/write_file.h"

#include <filesystem>
#include <fstream>
#include <system_error>

#include "hnf/proofs/error.h"

namespace hnf::proofs {

void write_text_atomically(const std::string& path, const std::string& text) {
  const std::string partial = path + ".partial";
  std::error_code ec;
  {
    std::ofstream f(partial, std::ios::binary | std::ios::trunc);
    if (!f) throw bad_input(path, "cannot open for writing");
    f << text;
    f.flush();
    if (!f) {
      f.close();
      std::filesystem::remove(partial, ec);
      throw bad_input(path, "write failed");
    }
  }
  std::filesystem::rename(partial, path, ec);
  if (ec) {
    std::filesystem::remove(partial, ec);
    throw bad_input(path, "cannot move the written file into place");
  }
}

void write_texts_atomically(const std::vector<std::pair<std::string, std::string>>& files) {
  std::size_t written = 0;
  try {
    for (const auto& [path, text] : files) {
      write_text_atomically(path, text);
      ++written;
    }
  } catch (...) {
    std::error_code ec;
    for (std::size_t i = 0; i < written; ++i) std::filesystem::remove(files[i].first, ec);
    throw;
  }
}

void ensure_directory(const std::string& path, const std::string& option) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec || !std::filesystem::is_directory(path)) {
    throw bad_input(option, "cannot create the directory " + path + (ec ? ": " + ec.message() : ""));
  }
}

}  // namespace hnf::proofs
