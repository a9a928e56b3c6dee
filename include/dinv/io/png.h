// Writing 8-bit RGB / greyscale PNG files (what the method saves its samples
// as). Self-contained: the image data goes into uncompressed ("stored")
// deflate blocks, so no compression library is needed; every PNG reader
// accepts it. Files are about 3 bytes per pixel.
#pragma once

#include <string>

#include <ATen/core/Tensor.h>

namespace dinv::io {

// `image`: uint8 [H, W, 3] (RGB) or [H, W, 1] / [H, W] (greyscale), on any device.
// IoError naming the path when it cannot be written; Error for a bad tensor.
void write_png(const std::string& path, const at::Tensor& image);

}  // namespace dinv::io
