// Output files of the CLI: written whole or not at all.
#pragma once

#include <string>

namespace hnf::verify::cli {

// Writes `text` to `path` through "<path>.partial" and a rename, so a failed run leaves
// nothing at `path`. Throws proofs::Error(kBadInput) naming the path when it cannot write.
void write_atomically(const std::string& path, const std::string& text);

}  // namespace hnf::verify::cli
