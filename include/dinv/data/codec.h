// PNG (libpng) and JPEG (libjpeg-turbo) decoding to RGB uint8 [H, W, 3], the
// way Pillow decodes and then converts with .convert("RGB"): palette and
// grayscale expanded, alpha dropped, 16-bit samples cut to their high byte,
// JPEG with the default islow IDCT and fancy upsampling. PNG encoding for the
// procedural dataset's image folders.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

namespace dinv::data {

// Caps, checked on the header before any pixel memory is allocated: images
// wider or taller than kMaxImageSide, or with more than kMaxImagePixels
// pixels, are IoErrors naming the file. A JPEG that libjpeg decodes only with
// a warning about missing or corrupt data ("Premature end of JPEG file",
// "Corrupt JPEG data: ...") is an IoError too, as in Pillow.
constexpr std::int64_t kMaxImageSide = 16384;
constexpr std::uint64_t kMaxImagePixels = std::uint64_t(1) << 26;  // 64 Mi pixels: 192 MiB as RGB

// `name` is only used in error messages (the file the bytes came from).
at::Tensor decode_png(const std::vector<std::uint8_t>& bytes, const std::string& name);
at::Tensor decode_jpeg(const std::vector<std::uint8_t>& bytes, const std::string& name);
// By signature (PNG or JPEG magic bytes); anything else is an IoError.
at::Tensor decode_image_file(const std::string& path);
// The size in an image file's header (PNG IHDR through libpng, JPEG frame
// header through libjpeg), with the same signature dispatch, caps and errors
// as decode_image_file but no pixel decoded: for checking a folder at open.
struct ImageSize {
  std::int64_t height = 0, width = 0;
};
ImageSize read_image_size(const std::string& path);
// `image`: uint8 [H, W, 3]; writes an 8-bit RGB PNG.
void write_png(const std::string& path, const at::Tensor& image);

}  // namespace dinv::data
