// Trace capture (hnf-verify trace), shared with the quality benchmark's calibration trace.
#pragma once

#include <cstdint>
#include <string>

namespace hnf::verify::cli {

struct TraceRequest {
  std::string model;          // model folder
  std::string text;           // UTF-8 text; the trace reads BOS then its first tokens - 1 tokens
  std::int64_t tokens = 2048;  // positions, BOS included
  std::string out;            // written atomically
  std::string dtype = "F32";
};

// Runs the model over the text and writes the trace. Throws proofs::Error(kBadInput) for a text
// with too few tokens, a bad dtype or model folder.
void write_trace(const TraceRequest& request);

}  // namespace hnf::verify::cli
