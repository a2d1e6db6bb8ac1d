#include "write_file.h"

#include <filesystem>
#include <fstream>

#include "hnf/proofs/error.h"

namespace hnf::verify::cli {

void write_atomically(const std::string& path, const std::string& text) {
  const std::string partial = path + ".partial";
  {
    std::ofstream f(partial, std::ios::binary | std::ios::trunc);
    if (!f) throw proofs::bad_input(path, "cannot open for writing");
    f << text;
    f.flush();
    if (!f) {
      f.close();
      std::filesystem::remove(partial);
      throw proofs::bad_input(path, "write failed");
    }
  }
  std::filesystem::rename(partial, path);
}

}  // namespace hnf::verify::cli
