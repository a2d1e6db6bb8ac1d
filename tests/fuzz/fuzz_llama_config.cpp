// Fuzz target "llama_config": runtime's config.json reader (runtime::load_llama_config) on
// arbitrary text. An accepted config must pass validate_llama_config again: the reader's and the
// validator's rules are one set.
#include <cstddef>
#include <cstdint>

#include "fuzz_support.h"
#include "hnf/runtime/llama_config.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const hnf::fuzz::ScratchFile scratch("config.json");
  const auto& path = scratch.write(data, size);
  const std::string file = path.string();
  (void)hnf::fuzz::accepts(file, [&] {
    const hnf::runtime::LlamaConfig config = hnf::runtime::load_llama_config(path);
    hnf::runtime::validate_llama_config(config, file);
  });
  return 0;
}
