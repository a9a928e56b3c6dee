// Image resizing that matches Pillow's Image.resize (the method's code resizes
// with PIL): separable, antialiased (the filter support grows with the
// downscale factor), on uint8 images, with Pillow's fixed-point rounding.
#pragma once

#include <string>

#include <ATen/core/Tensor.h>

namespace dinv::io {

enum class ResizeFilter { nearest, bilinear, bicubic, lanczos };

ResizeFilter resize_filter_from_string(const std::string& name);  // "bicubic", ...

// `image`: uint8 [H, W, C] (or a batch [N, H, W, C]); returns uint8 [height, width, C].
at::Tensor resize(const at::Tensor& image, std::int64_t height, std::int64_t width,
                  ResizeFilter filter = ResizeFilter::bicubic);

}  // namespace dinv::io
