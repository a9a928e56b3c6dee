// Transforms on uint8 [H, W, 3]. AutoAugment follows torchvision's tensor
// implementation (functional_tensor): float32 arithmetic, truncation to
// uint8, nearest-neighbour sampling on the pixel-centre grid of grid_sample.
#include "dinv/data/transforms.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <map>

#include "dinv/core/error.h"

namespace dinv::data {
namespace {

void require_hwc(const at::Tensor& image, const char* what) {
  if (image.dim() != 3 || image.size(2) != 3 || image.scalar_type() != at::kByte)
    throw Error(std::string(what) + ": expected a uint8 [H, W, 3] image, found " + c10::str(image.sizes()) + " " +
                std::string(c10::toString(image.scalar_type())));
}

// ---- AutoAugment ops (torchvision semantics) ----------------------------------

enum class Op {
  ShearX,
  ShearY,
  TranslateX,
  TranslateY,
  Rotate,
  Brightness,
  Color,
  Contrast,
  Sharpness,
  Posterize,
  Solarize,
  AutoContrast,
  Equalize,
  Invert
};

struct PolicyStep {
  Op op;
  double probability;
  int magnitude_bin;  // -1: the op has no magnitude
};

// torchvision AutoAugmentPolicy.CIFAR10, in its order.
const std::array<std::array<PolicyStep, 2>, 25> kCifar10Policy{{
    {{{Op::Invert, 0.1, -1}, {Op::Contrast, 0.2, 6}}},         {{{Op::Rotate, 0.7, 2}, {Op::TranslateX, 0.3, 9}}},
    {{{Op::Sharpness, 0.8, 1}, {Op::Sharpness, 0.9, 3}}},      {{{Op::ShearY, 0.5, 8}, {Op::TranslateY, 0.7, 9}}},
    {{{Op::AutoContrast, 0.5, -1}, {Op::Equalize, 0.9, -1}}},  {{{Op::ShearY, 0.2, 7}, {Op::Posterize, 0.3, 7}}},
    {{{Op::Color, 0.4, 3}, {Op::Brightness, 0.6, 7}}},         {{{Op::Sharpness, 0.3, 9}, {Op::Brightness, 0.7, 9}}},
    {{{Op::Equalize, 0.6, -1}, {Op::Equalize, 0.5, -1}}},      {{{Op::Contrast, 0.6, 7}, {Op::Sharpness, 0.6, 5}}},
    {{{Op::Color, 0.7, 7}, {Op::TranslateX, 0.5, 8}}},         {{{Op::Equalize, 0.3, -1}, {Op::AutoContrast, 0.4, -1}}},
    {{{Op::TranslateY, 0.4, 3}, {Op::Sharpness, 0.2, 6}}},     {{{Op::Brightness, 0.9, 6}, {Op::Color, 0.2, 8}}},
    {{{Op::Solarize, 0.5, 2}, {Op::Invert, 0.0, -1}}},         {{{Op::Equalize, 0.2, -1}, {Op::AutoContrast, 0.6, -1}}},
    {{{Op::Equalize, 0.2, -1}, {Op::Equalize, 0.6, -1}}},      {{{Op::Color, 0.9, 9}, {Op::Equalize, 0.6, -1}}},
    {{{Op::AutoContrast, 0.8, -1}, {Op::Solarize, 0.2, 8}}},   {{{Op::Brightness, 0.1, 3}, {Op::Color, 0.7, 0}}},
    {{{Op::Solarize, 0.4, 5}, {Op::AutoContrast, 0.9, -1}}},   {{{Op::TranslateY, 0.9, 9}, {Op::TranslateY, 0.7, 9}}},
    {{{Op::AutoContrast, 0.9, -1}, {Op::Solarize, 0.8, 3}}},   {{{Op::Equalize, 0.8, -1}, {Op::Invert, 0.1, -1}}},
    {{{Op::TranslateY, 0.7, 9}, {Op::AutoContrast, 0.9, -1}}},
}};

// torchvision's _augmentation_space(10, (H, W)): (magnitude, signed).
std::pair<double, bool> magnitude_of(Op op, int bin, std::int64_t height, std::int64_t width) {
  auto linspace = [bin](double lo, double hi) {
    return static_cast<double>(static_cast<float>(lo + (hi - lo) * bin / 9.0));
  };
  switch (op) {
    case Op::ShearX:
    case Op::ShearY:
      return {linspace(0.0, 0.3), true};
    case Op::TranslateX:
      return {linspace(0.0, 150.0 / 331.0 * width), true};
    case Op::TranslateY:
      return {linspace(0.0, 150.0 / 331.0 * height), true};
    case Op::Rotate:
      return {linspace(0.0, 30.0), true};
    case Op::Brightness:
    case Op::Color:
    case Op::Contrast:
    case Op::Sharpness:
      return {linspace(0.0, 0.9), true};
    case Op::Posterize:
      return {8.0 - std::nearbyint(bin / 2.25), false};
    case Op::Solarize:
      return {linspace(255.0, 0.0), false};
    default:
      return {0.0, false};
  }
}

// torchvision _get_inverse_affine_matrix: output (centred) -> input (centred) coordinates.
std::array<double, 6> inverse_affine(double cx, double cy, double angle_deg, double tx, double ty, double shear_x_deg,
                                     double shear_y_deg) {
  const double rot = angle_deg * M_PI / 180, sx = shear_x_deg * M_PI / 180, sy = shear_y_deg * M_PI / 180;
  const double a = std::cos(rot - sy) / std::cos(sy);
  const double b = -std::cos(rot - sy) * std::tan(sx) / std::cos(sy) - std::sin(rot);
  const double c = std::sin(rot - sy) / std::cos(sy);
  const double d = -std::sin(rot - sy) * std::tan(sx) / std::cos(sy) + std::cos(rot);
  std::array<double, 6> m{d, -b, 0.0, -c, a, 0.0};
  m[2] += m[0] * (-cx - tx) + m[1] * (-cy - ty);
  m[5] += m[3] * (-cx - tx) + m[4] * (-cy - ty);
  m[2] += cx;
  m[5] += cy;
  return m;
}

// grid_sample(nearest, zeros padding, align_corners=False) on torchvision's
// affine grid: pixel centres relative to the image centre.
at::Tensor warp_nearest(const at::Tensor& image, const std::array<double, 6>& m) {
  const auto h = image.size(0), w = image.size(1);
  auto out = at::zeros_like(image);
  const auto* src = image.data_ptr<std::uint8_t>();
  auto* dst = out.data_ptr<std::uint8_t>();
  for (std::int64_t y = 0; y < h; ++y)
    for (std::int64_t x = 0; x < w; ++x) {
      const float xc = static_cast<float>(x + 0.5 - w * 0.5), yc = static_cast<float>(y + 0.5 - h * 0.5);
      const float ix = static_cast<float>(m[0] * xc + m[1] * yc + m[2]) + static_cast<float>(w * 0.5 - 0.5);
      const float iy = static_cast<float>(m[3] * xc + m[4] * yc + m[5]) + static_cast<float>(h * 0.5 - 0.5);
      const auto sx = static_cast<std::int64_t>(std::nearbyint(ix)), sy = static_cast<std::int64_t>(std::nearbyint(iy));
      if (sx < 0 || sy < 0 || sx >= w || sy >= h) continue;
      for (int c = 0; c < 3; ++c) dst[(y * w + x) * 3 + c] = src[(sy * w + sx) * 3 + c];
    }
  return out;
}

std::uint8_t to_u8(float v) { return static_cast<std::uint8_t>(std::clamp(v, 0.0f, 255.0f)); }  // clamp, truncate

// torchvision _blend: ratio * a + (1 - ratio) * b, clamped, truncated.
at::Tensor blend(const at::Tensor& a, const std::vector<float>& b, double ratio) {
  auto out = at::empty_like(a);
  const auto* pa = a.data_ptr<std::uint8_t>();
  auto* po = out.data_ptr<std::uint8_t>();
  const float r = static_cast<float>(ratio), q = static_cast<float>(1.0 - ratio);
  for (std::int64_t i = 0; i < a.numel(); ++i) po[i] = to_u8(r * pa[i] + q * b[b.size() == 1 ? 0 : i]);
  return out;
}

std::vector<float> grayscale3(const at::Tensor& image) {  // rgb_to_grayscale (truncated), one value per channel slot
  const auto n = image.size(0) * image.size(1);
  const auto* p = image.data_ptr<std::uint8_t>();
  std::vector<float> gray(n * 3);
  for (std::int64_t i = 0; i < n; ++i) {
    const float l = 0.2989f * p[3 * i] + 0.587f * p[3 * i + 1] + 0.114f * p[3 * i + 2];
    gray[3 * i] = gray[3 * i + 1] = gray[3 * i + 2] = static_cast<float>(static_cast<std::uint8_t>(l));
  }
  return gray;
}

at::Tensor adjust_contrast(const at::Tensor& image, double factor) {
  const auto gray = grayscale3(image);
  double sum = 0;
  for (std::size_t i = 0; i < gray.size(); i += 3) sum += gray[i];
  return blend(image, {static_cast<float>(sum / (gray.size() / 3))}, factor);
}

at::Tensor adjust_sharpness(const at::Tensor& image, double factor) {
  const auto h = image.size(0), w = image.size(1);
  if (h <= 2 || w <= 2) return image.clone();
  const auto* p = image.data_ptr<std::uint8_t>();
  std::vector<float> degenerate(p, p + image.numel());  // borders keep the original
  for (std::int64_t y = 1; y < h - 1; ++y)
    for (std::int64_t x = 1; x < w - 1; ++x)
      for (int c = 0; c < 3; ++c) {
        float s = 0;
        for (int dy = -1; dy <= 1; ++dy)
          for (int dx = -1; dx <= 1; ++dx) s += p[((y + dy) * w + x + dx) * 3 + c] * (dx == 0 && dy == 0 ? 5.0f : 1.0f);
        degenerate[(y * w + x) * 3 + c] = std::nearbyint(s / 13.0f);
      }
  return blend(image, degenerate, factor);
}

template <class F>
at::Tensor map_pixels(const at::Tensor& image, F f) {
  auto out = image.clone();
  auto* p = out.data_ptr<std::uint8_t>();
  for (std::int64_t i = 0; i < out.numel(); ++i) p[i] = f(p[i], i % 3);
  return out;
}

at::Tensor autocontrast(const at::Tensor& image) {
  std::array<float, 3> lo{255, 255, 255}, hi{0, 0, 0};
  const auto* p = image.data_ptr<std::uint8_t>();
  for (std::int64_t i = 0; i < image.numel(); ++i)
    lo[i % 3] = std::min<float>(lo[i % 3], p[i]), hi[i % 3] = std::max<float>(hi[i % 3], p[i]);
  std::array<float, 3> scale{};
  for (int c = 0; c < 3; ++c) {
    if (hi[c] == lo[c])
      lo[c] = 0, scale[c] = 1;
    else
      scale[c] = 255.0f / (hi[c] - lo[c]);
  }
  return map_pixels(image, [&](std::uint8_t v, int c) { return to_u8((v - lo[c]) * scale[c]); });
}

at::Tensor equalize(const at::Tensor& image) {  // torchvision _scale_channel per channel
  std::array<std::array<std::int64_t, 256>, 3> hist{};
  const auto* p = image.data_ptr<std::uint8_t>();
  for (std::int64_t i = 0; i < image.numel(); ++i) ++hist[i % 3][p[i]];
  std::array<std::array<std::uint8_t, 256>, 3> lut{};
  std::array<bool, 3> identity{};
  for (int c = 0; c < 3; ++c) {
    std::int64_t last_nonzero = 0, total = 0;
    for (int v = 0; v < 256; ++v)
      if (hist[c][v]) last_nonzero = hist[c][v];
    for (int v = 0; v < 256; ++v) total += hist[c][v];
    const std::int64_t step = (total - last_nonzero) / 255;
    identity[c] = step == 0;
    std::int64_t cumulative = 0;
    for (int v = 0; v < 256; ++v) {  // lut = shift-right-by-one of (cumsum + step/2) / step
      lut[c][v] = step ? static_cast<std::uint8_t>(std::min<std::int64_t>(255, (cumulative + step / 2) / step)) : 0;
      cumulative += hist[c][v];
    }
  }
  return map_pixels(image, [&](std::uint8_t v, int c) { return identity[c] ? v : lut[c][v]; });
}

at::Tensor apply_op(const at::Tensor& image, Op op, double magnitude) {
  const double h = static_cast<double>(image.size(0)), w = static_cast<double>(image.size(1));
  const double shear_deg = std::atan(magnitude) * 180 / M_PI;
  switch (op) {
    case Op::ShearX:
      return warp_nearest(image, inverse_affine(-w * 0.5, -h * 0.5, 0, 0, 0, shear_deg, 0));
    case Op::ShearY:
      return warp_nearest(image, inverse_affine(-w * 0.5, -h * 0.5, 0, 0, 0, 0, shear_deg));
    case Op::TranslateX:
      return warp_nearest(image, inverse_affine(0, 0, 0, std::trunc(magnitude), 0, 0, 0));
    case Op::TranslateY:
      return warp_nearest(image, inverse_affine(0, 0, 0, 0, std::trunc(magnitude), 0, 0));
    case Op::Rotate:
      return warp_nearest(image, inverse_affine(0, 0, -magnitude, 0, 0, 0, 0));
    case Op::Brightness:
      return blend(image, {0.0f}, 1.0 + magnitude);
    case Op::Color:
      return blend(image, grayscale3(image), 1.0 + magnitude);
    case Op::Contrast:
      return adjust_contrast(image, 1.0 + magnitude);
    case Op::Sharpness:
      return adjust_sharpness(image, 1.0 + magnitude);
    case Op::Posterize: {
      const auto mask = static_cast<std::uint8_t>(0xFF << (8 - static_cast<int>(magnitude)));
      return map_pixels(image, [mask](std::uint8_t v, int) { return static_cast<std::uint8_t>(v & mask); });
    }
    case Op::Solarize:
      return map_pixels(
          image, [magnitude](std::uint8_t v, int) { return v >= magnitude ? static_cast<std::uint8_t>(255 - v) : v; });
    case Op::AutoContrast:
      return autocontrast(image);
    case Op::Equalize:
      return equalize(image);
    case Op::Invert:
      return map_pixels(image, [](std::uint8_t v, int) { return static_cast<std::uint8_t>(255 - v); });
  }
  return image;
}

}  // namespace

at::Tensor center_crop(const at::Tensor& image, std::int64_t height, std::int64_t width) {
  require_hwc(image, "center_crop");
  const auto h = image.size(0), w = image.size(1);
  if (height > h || width > w)
    throw Error("center_crop: crop " + std::to_string(height) + "x" + std::to_string(width) +
                " is larger than the image " + std::to_string(h) + "x" + std::to_string(w));
  // torchvision: top = int(round((h - height) / 2.0)), left likewise.
  const auto top = static_cast<std::int64_t>(std::nearbyint((h - height) / 2.0));
  const auto left = static_cast<std::int64_t>(std::nearbyint((w - width) / 2.0));
  return image.narrow(0, top, height).narrow(1, left, width).contiguous();
}

at::Tensor random_crop(const at::Tensor& image, std::int64_t size, std::int64_t padding, Rng& rng) {
  require_hwc(image, "random_crop");
  const auto h = image.size(0) + 2 * padding, w = image.size(1) + 2 * padding;
  if (size > h || size > w)
    throw Error("random_crop: crop " + std::to_string(size) + " is larger than the padded image " + std::to_string(h) +
                "x" + std::to_string(w));
  auto padded = at::zeros({h, w, 3}, at::kByte);
  padded.narrow(0, padding, image.size(0)).narrow(1, padding, image.size(1)).copy_(image);
  const auto top = rng.integer(0, h - size), left = rng.integer(0, w - size);
  return padded.narrow(0, top, size).narrow(1, left, size).contiguous();
}

at::Tensor horizontal_flip(const at::Tensor& image) {
  require_hwc(image, "horizontal_flip");
  return image.flip({1}).contiguous();
}

at::Tensor random_horizontal_flip(const at::Tensor& image, Rng& rng, double p) {
  return rng.uniform() < p ? horizontal_flip(image) : image;
}

at::Tensor auto_augment_cifar10(const at::Tensor& image, Rng& rng) {
  require_hwc(image, "auto_augment_cifar10");
  // torchvision's draws, in its order: sub-policy, two probabilities, two signs.
  const auto& policy = kCifar10Policy[rng.below(kCifar10Policy.size())];
  const double probs[2] = {rng.uniform(), rng.uniform()};
  const bool negative[2] = {rng.below(2) == 0, rng.below(2) == 0};
  at::Tensor out = image.contiguous();
  for (int i = 0; i < 2; ++i) {
    const auto& step = policy[i];
    if (probs[i] > step.probability) continue;
    auto [magnitude, is_signed] = step.magnitude_bin < 0
                                      ? std::pair<double, bool>{0.0, false}
                                      : magnitude_of(step.op, step.magnitude_bin, out.size(0), out.size(1));
    if (is_signed && negative[i]) magnitude = -magnitude;
    out = apply_op(out, step.op, magnitude);
  }
  return out;
}

at::Tensor auto_augment_op(const at::Tensor& image, const std::string& op, double magnitude) {
  require_hwc(image, "auto_augment_op");
  static const std::map<std::string, Op> ops{
      {"ShearX", Op::ShearX},         {"ShearY", Op::ShearY},     {"TranslateX", Op::TranslateX},
      {"TranslateY", Op::TranslateY}, {"Rotate", Op::Rotate},     {"Brightness", Op::Brightness},
      {"Color", Op::Color},           {"Contrast", Op::Contrast}, {"Sharpness", Op::Sharpness},
      {"Posterize", Op::Posterize},   {"Solarize", Op::Solarize}, {"AutoContrast", Op::AutoContrast},
      {"Equalize", Op::Equalize},     {"Invert", Op::Invert}};
  const auto it = ops.find(op);
  if (it == ops.end()) throw Error("auto_augment_op: unknown op '" + op + "'");
  return apply_op(image.contiguous(), it->second, magnitude);
}

at::Tensor to_normalized_chw(const at::Tensor& image, const MeanStd& norm) {
  require_hwc(image, "to_normalized_chw");
  auto chw = image.permute({2, 0, 1}).to(at::kFloat).div_(255.0f);
  auto mean = at::tensor(std::vector<float>(norm.mean.begin(), norm.mean.end())).view({3, 1, 1});
  auto std = at::tensor(std::vector<float>(norm.std.begin(), norm.std.end())).view({3, 1, 1});
  return chw.sub_(mean).div_(std).contiguous();
}

at::Tensor MixedBatch::soft_targets(std::int64_t num_classes) const {
  auto targets = at::zeros({labels_a.size(0), num_classes}, at::kFloat);
  targets.scatter_add_(1, labels_a.view({-1, 1}), at::full({labels_a.size(0), 1}, static_cast<float>(lambda)));
  targets.scatter_add_(1, labels_b.view({-1, 1}), at::full({labels_b.size(0), 1}, static_cast<float>(1.0 - lambda)));
  return targets;
}

namespace {

std::vector<std::int64_t> random_permutation(std::int64_t n, Rng& rng) {
  std::vector<std::int64_t> p(n);
  for (std::int64_t i = 0; i < n; ++i) p[i] = i;
  for (std::int64_t i = n - 1; i > 0; --i) std::swap(p[i], p[rng.below(static_cast<std::uint64_t>(i + 1))]);
  return p;
}

void require_batch(const at::Tensor& images, const at::Tensor& labels, double alpha, const char* what) {
  if (images.dim() != 4 || labels.dim() != 1 || labels.size(0) != images.size(0) || labels.scalar_type() != at::kLong)
    throw Error(std::string(what) + ": expected images [B, C, H, W] and int64 labels [B], found " +
                c10::str(images.sizes()) + " and " + c10::str(labels.sizes()));
  if (!(alpha > 0)) throw ConfigError(std::string(what) + ": alpha must be > 0, found " + std::to_string(alpha));
}

}  // namespace

MixedBatch mixup(const at::Tensor& images, const at::Tensor& labels, double alpha, Rng& rng) {
  require_batch(images, labels, alpha, "mixup");
  const double lambda = rng.beta(alpha, alpha);
  auto perm = at::tensor(random_permutation(images.size(0), rng), at::kLong);
  auto partner = images.index_select(0, perm);
  return {images * lambda + partner * (1.0 - lambda), labels, labels.index_select(0, perm), lambda};
}

MixedBatch cutmix(const at::Tensor& images, const at::Tensor& labels, double alpha, Rng& rng) {
  require_batch(images, labels, alpha, "cutmix");
  const double lambda = rng.beta(alpha, alpha);
  auto perm = at::tensor(random_permutation(images.size(0), rng), at::kLong);
  const auto h = images.size(2), w = images.size(3);
  const double cut = std::sqrt(1.0 - lambda);
  const auto cut_h = static_cast<std::int64_t>(h * cut), cut_w = static_cast<std::int64_t>(w * cut);
  const auto cy = rng.integer(0, h - 1), cx = rng.integer(0, w - 1);
  const auto y0 = std::clamp(cy - cut_h / 2, std::int64_t{0}, h), y1 = std::clamp(cy + cut_h / 2, std::int64_t{0}, h);
  const auto x0 = std::clamp(cx - cut_w / 2, std::int64_t{0}, w), x1 = std::clamp(cx + cut_w / 2, std::int64_t{0}, w);
  auto mixed = images.clone();
  if (y1 > y0 && x1 > x0)
    mixed.narrow(2, y0, y1 - y0)
        .narrow(3, x0, x1 - x0)
        .copy_(images.index_select(0, perm).narrow(2, y0, y1 - y0).narrow(3, x0, x1 - x0));
  const double pasted = static_cast<double>((y1 - y0) * (x1 - x0)) / static_cast<double>(h * w);
  return {mixed, labels, labels.index_select(0, perm), 1.0 - pasted};
}

}  // namespace dinv::data
