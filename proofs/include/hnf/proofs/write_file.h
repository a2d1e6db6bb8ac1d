// Output files (certificates, reports, SMT-LIB scripts): written whole or not at all.
#pragma once

#include <string>

namespace hnf::proofs {

// Writes `text` to `path` through "<path>.partial" and a rename, so a failed run leaves
// nothing at `path`. Throws proofs::Error(kBadInput) naming the path when it cannot write.
void write_text_atomically(const std::string& path, const std::string& text);

// Creates the directory (and its parents) if missing. Throws bad input naming `option` and the
// path when it cannot, or when the path exists and is not a directory.
void ensure_directory(const std::string& path, const std::string& option);

}  // namespace hnf::proofs
