// png_stats FILE: prints "WIDTH HEIGHT NONBACKGROUND COLOURS" of a PNG: the pixels that differ
// from the top-left pixel (the page background) and the distinct colours (counted up to 4096).
// The browser test of the audit report uses it to tell a rendered page from a blank one.
#include <png.h>

#include <cstdint>
#include <cstdio>
#include <set>
#include <vector>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: png_stats FILE.png\n");
    return 2;
  }
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  if (png_image_begin_read_from_file(&image, argv[1]) == 0) {
    std::fprintf(stderr, "png_stats: %s: %s\n", argv[1], image.message);
    return 1;
  }
  image.format = PNG_FORMAT_RGBA;
  std::vector<std::uint32_t> pixels(static_cast<std::size_t>(image.width) * image.height);  // [height, width] RGBA
  if (png_image_finish_read(&image, nullptr, pixels.data(), 0, nullptr) == 0) {
    std::fprintf(stderr, "png_stats: %s: %s\n", argv[1], image.message);
    return 1;
  }
  std::size_t differ = 0;
  std::set<std::uint32_t> colours;
  for (const std::uint32_t p : pixels) {
    differ += p != pixels.front() ? 1 : 0;
    if (colours.size() < 4096) colours.insert(p);
  }
  std::printf("%u %u %zu %zu\n", image.width, image.height, differ, colours.size());
  return 0;
}
