// Output files (certificates, reports, SMT-LIB scripts): written whole or not at all.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace hnf::proofs {

// Writes `text` to `path` through "<path>.partial" (written, fsync'ed, closed) and a rename, so
// a failed run leaves nothing at `path` and no partial file. Throws proofs::Error naming the
// path: kBadInput when it cannot be created (missing folder, no permission), kWriteFailed
// (exit 5) when writing, flushing or renaming fails (full disk, file size limit, I/O error).
void write_text_atomically(const std::string& path, const std::string& text);

// Writes every (path, text) to its partial file first and renames them only when all are
// complete: a failed write leaves every destination as it was and removes every partial file;
// a rename failing midway removes the files already moved. All of them or none.
void write_texts_atomically(const std::vector<std::pair<std::string, std::string>>& files);

// The same for an output too large to hold as one string: `produce` passes the text to the sink
// in pieces, written to "<path>.partial" as they come; renamed when produce returns, removed
// when it (or a write) throws.
using TextSink = std::function<void(std::string_view)>;
void write_streamed_atomically(const std::string& path, const std::function<void(const TextSink&)>& produce);

// Creates the directory (and its parents) if missing. Throws bad input naming `option` and the
// path when it cannot, or when the path exists and is not a directory.
void ensure_directory(const std::string& path, const std::string& option);

}  // namespace hnf::proofs
