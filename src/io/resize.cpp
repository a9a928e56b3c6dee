// Pillow-compatible resize of uint8 images (what Image.resize does for 8-bit
// modes): a separable convolution, horizontal pass first, each output pixel a
// weighted sum over the input pixels under the filter. When downscaling, the
// filter is stretched by the scale factor (antialiasing). Weights are
// normalised to sum 1 in double precision, then rounded to signed fixed point
// with 22 fractional bits; sums start at one half (round to nearest) and are
// clamped to [0, 255] after each pass. Nearest neighbour picks the source pixel
// under each output pixel's centre.
#include "dinv/io/resize.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include <ATen/ATen.h>

#include "dinv/core/error.h"

namespace dinv::io {

namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;  // headroom for 8-bit values times weights

struct Filter {
  double support;
  double (*weight)(double);
};

double bilinear_weight(double x) {
  x = std::fabs(x);
  return x < 1.0 ? 1.0 - x : 0.0;
}

// Keys' cubic convolution with a = -0.5 (Pillow's BICUBIC).
double bicubic_weight(double x) {
  constexpr double a = -0.5;
  x = std::fabs(x);
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

double sinc(double x) {
  if (x == 0.0) return 1.0;
  x *= M_PI;
  return std::sin(x) / x;
}

double lanczos_weight(double x) { return (-3.0 <= x && x < 3.0) ? sinc(x) * sinc(x / 3) : 0.0; }

Filter filter_for(ResizeFilter f) {
  switch (f) {
    case ResizeFilter::bilinear: return {1.0, bilinear_weight};
    case ResizeFilter::bicubic: return {2.0, bicubic_weight};
    case ResizeFilter::lanczos: return {3.0, lanczos_weight};
    case ResizeFilter::nearest: break;
  }
  return {0.0, nullptr};
}

// For each output index: the first input index, the number of taps and the
// fixed-point weights of one 1-D pass from in_size to out_size.
struct Taps {
  std::vector<int> first, count;
  std::vector<std::int32_t> weights;  // out_size x width
  int width = 0;
};

Taps precompute_taps(int in_size, int out_size, const Filter& filter) {
  const double scale = static_cast<double>(in_size) / out_size;
  const double filter_scale = std::max(scale, 1.0);  // stretch only when downscaling
  const double support = filter.support * filter_scale;
  Taps taps;
  taps.width = static_cast<int>(std::ceil(support)) * 2 + 1;
  taps.first.resize(out_size);
  taps.count.resize(out_size);
  taps.weights.assign(static_cast<std::size_t>(out_size) * taps.width, 0);
  std::vector<double> w(taps.width);
  for (int o = 0; o < out_size; ++o) {
    const double center = (o + 0.5) * scale;
    // Truncation toward zero, then clamping, as Pillow computes the window.
    const int lo = std::max(static_cast<int>(center - support + 0.5), 0);
    const int hi = std::min(static_cast<int>(center + support + 0.5), in_size);
    const int n = hi - lo;
    double total = 0.0;
    for (int k = 0; k < n; ++k) {
      w[k] = filter.weight((k + lo - center + 0.5) / filter_scale);
      total += w[k];
    }
    for (int k = 0; k < n; ++k) {
      const double normalised = total != 0.0 ? w[k] / total : w[k];
      const double fixed = normalised * (1 << kPrecisionBits);
      taps.weights[static_cast<std::size_t>(o) * taps.width + k] =
          static_cast<std::int32_t>(fixed < 0 ? fixed - 0.5 : fixed + 0.5);
    }
    taps.first[o] = lo;
    taps.count[o] = n;
  }
  return taps;
}

std::uint8_t clip8(std::int32_t sum) {
  if (sum >= (1 << kPrecisionBits << 8)) return 255;
  if (sum <= 0) return 0;
  return static_cast<std::uint8_t>(sum >> kPrecisionBits);
}

// One pass along an axis with `stride` elements between neighbouring taps.
// `lines` independent lines of `in_len` -> `out_len` samples; `line_step_in/out`
// separate lines; `channels` interleaved values per sample.
struct PassShape {
  int lines, in_len, out_len, channels;
  std::ptrdiff_t line_step_in, line_step_out, tap_stride_in, tap_stride_out;
};

void convolve(const std::uint8_t* in, std::uint8_t* out, const PassShape& s, const Taps& taps) {
  for (int line = 0; line < s.lines; ++line) {
    const std::uint8_t* src = in + line * s.line_step_in;
    std::uint8_t* dst = out + line * s.line_step_out;
    for (int o = 0; o < s.out_len; ++o) {
      const std::int32_t* w = &taps.weights[static_cast<std::size_t>(o) * taps.width];
      for (int c = 0; c < s.channels; ++c) {
        std::int32_t sum = 1 << (kPrecisionBits - 1);
        for (int k = 0; k < taps.count[o]; ++k) sum += src[(taps.first[o] + k) * s.tap_stride_in + c] * w[k];
        dst[o * s.tap_stride_out + c] = clip8(sum);
      }
    }
  }
}

// Nearest neighbour: source index of each output index. Pillow walks the
// source coordinate of the pixel centres by repeated addition of the scale and
// truncates, so the rounding of that running sum decides ties; do the same.
at::Tensor nearest_sources(int in_size, int out_size) {
  const double scale = static_cast<double>(in_size) / out_size;
  auto sources = at::empty({out_size}, at::kLong);
  auto* p = sources.data_ptr<std::int64_t>();
  double coord = scale * 0.5;
  for (int o = 0; o < out_size; ++o, coord += scale) p[o] = std::min(static_cast<int>(coord), in_size - 1);
  return sources;
}

// One image [h, w, c] -> [height, width, c].
at::Tensor resize_one(const at::Tensor& image, int height, int width, ResizeFilter filter_kind) {
  const int h = static_cast<int>(image.size(0)), w = static_cast<int>(image.size(1)), c = static_cast<int>(image.size(2));
  if (filter_kind == ResizeFilter::nearest) {
    auto rows = nearest_sources(h, height), cols = nearest_sources(w, width);
    return image.index_select(0, rows).index_select(1, cols).contiguous();
  }
  const Filter filter = filter_for(filter_kind);
  at::Tensor current = image;
  // Pillow skips a pass whose size does not change (no rounding there).
  if (width != w) {
    at::Tensor next = at::empty({h, width, c}, at::kByte);
    convolve(current.data_ptr<std::uint8_t>(), next.data_ptr<std::uint8_t>(),
             {h, w, width, c, std::ptrdiff_t{w} * c, std::ptrdiff_t{width} * c, c, c}, precompute_taps(w, width, filter));
    current = next;
  }
  if (height != h) {
    const int cur_w = static_cast<int>(current.size(1));
    at::Tensor next = at::empty({height, cur_w, c}, at::kByte);
    // Vertical: each (column, channel) pair is a line; taps step by a row.
    const std::ptrdiff_t row = std::ptrdiff_t{cur_w} * c;
    convolve(current.data_ptr<std::uint8_t>(), next.data_ptr<std::uint8_t>(),
             {1, h, height, cur_w * c, 0, 0, row, row}, precompute_taps(h, height, filter));
    current = next;
  }
  return current.is_same(image) ? image.clone() : current;
}

}  // namespace

ResizeFilter resize_filter_from_string(const std::string& name) {
  if (name == "nearest") return ResizeFilter::nearest;
  if (name == "bilinear") return ResizeFilter::bilinear;
  if (name == "bicubic") return ResizeFilter::bicubic;
  if (name == "lanczos") return ResizeFilter::lanczos;
  throw ConfigError("resize filter '" + name + "' is unknown (allowed: nearest, bilinear, bicubic, lanczos)");
}

at::Tensor resize(const at::Tensor& image, std::int64_t height, std::int64_t width, ResizeFilter filter) {
  if (image.scalar_type() != at::kByte || (image.dim() != 3 && image.dim() != 4))
    throw Error("resize: expected a uint8 image [H, W, C] or batch [N, H, W, C], got " +
                std::string(c10::toString(image.scalar_type())) + " with " + std::to_string(image.dim()) + " dims");
  if (height < 1 || width < 1 || height > (1 << 20) || width > (1 << 20))
    throw Error("resize: target size " + std::to_string(height) + "x" + std::to_string(width) +
                " is not allowed (allowed: 1 to 1048576 per side)");
  const at::Tensor cpu = image.to(at::kCPU).contiguous();
  if (cpu.numel() == 0) throw Error("resize: the input image is empty");
  if (cpu.dim() == 3) return resize_one(cpu, static_cast<int>(height), static_cast<int>(width), filter).to(image.device());
  std::vector<at::Tensor> out;
  for (std::int64_t i = 0; i < cpu.size(0); ++i)
    out.push_back(resize_one(cpu[i], static_cast<int>(height), static_cast<int>(width), filter));
  return at::stack(out).to(image.device());
}

}  // namespace dinv::io
