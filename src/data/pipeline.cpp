// The per-example training/evaluation recipe. Kept apart from transforms.cpp:
// it is the only data code that needs dinv::io::resize (module io), so the
// rest of the module links and is tested on its own.
#include <ATen/ATen.h>

#include <algorithm>

#include "dinv/core/error.h"
#include "dinv/data/loader.h"
#include "dinv/data/transforms.h"
#include "dinv/io/resize.h"

namespace dinv::data {

at::Tensor resize_shorter_side(const at::Tensor& image, std::int64_t size) {
  const auto h = image.size(0), w = image.size(1);
  if (std::min(h, w) == size) return image;
  // torchvision Resize(int): the shorter side becomes `size`, the longer int(size * long / short).
  const auto new_h = h <= w ? size : size * h / w;
  const auto new_w = h <= w ? size * w / h : size;
  return io::resize(image, new_h, new_w, io::ResizeFilter::bicubic);
}

at::Tensor transform_example(const at::Tensor& image, const TransformOptions& o, Rng& rng) {
  at::Tensor x = image;
  if (o.resolution > 0 && (x.size(0) != o.resolution || x.size(1) != o.resolution))
    x = center_crop(resize_shorter_side(x, o.resolution), o.resolution, o.resolution);
  if (o.train) {
    const auto size = x.size(0);
    if (o.random_crop) x = random_crop(x, size, o.padding >= 0 ? o.padding : size / 8, rng);
    if (o.flip) x = random_horizontal_flip(x, rng);
    if (o.autoaugment) x = auto_augment_cifar10(x, rng);
  }
  return to_normalized_chw(x, o.norm);
}

ExampleTransform make_example_transform(const TransformOptions& options) {
  return [options](const at::Tensor& image, Rng& rng) { return transform_example(image, options, rng); };
}

}  // namespace dinv::data
