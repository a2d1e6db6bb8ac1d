// Output files (certificates, reports, SMT-LIB scripts): written whole or not at all.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace hnf::proofs {

// Writes `text` to `path` through "<path>.partial" and a rename, so a failed run leaves
// nothing at `path`. Throws proofs::Error(kBadInput) naming the path when it cannot write.
void write_text_atomically(const std::string& path, const std::string& text);

// Writes every (path, text) with write_text_atomically, in order; if one fails, the files
// already written are removed before the error propagates: all of them or none.
void write_texts_atomically(const std::vector<std::pair<std::string, std::string>>& files);

// Creates the directory (and its parents) if missing. Throws bad input naming `option` and the
// path when it cannot, or when the path exists and is not a directory.
void ensure_directory(const std::string& path, const std::string& option);

}  // namespace hnf::proofs
