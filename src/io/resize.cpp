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
    case ResizeFilter::bilinear:
      return {1.0, bilinear_weight};
    case ResizeFilter::bicubic:
      return {2.0, bicubic_weight};
    case ResizeFilter::lanczos:
      return {3.0, lanczos_weight};
    case ResizeFilter::nearest:
      break;
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
  // Accumulate tap by tap over all channels of an output sample, so that the
  // inner loop runs over contiguous memory (vectorisable for the vertical pass,
  // where "channels" is a whole row).
  std::vector<std::int32_t> acc(static_cast<std::size_t>(s.channels));
  for (int line = 0; line < s.lines; ++line) {
    const std::uint8_t* src = in + line * s.line_step_in;
    std::uint8_t* dst = out + line * s.line_step_out;
    for (int o = 0; o < s.out_len; ++o) {
      const std::int32_t* w = &taps.weights[static_cast<std::size_t>(o) * taps.width];
      std::fill(acc.begin(), acc.end(), 1 << (kPrecisionBits - 1));  // + one half: round to nearest
      for (int k = 0; k < taps.count[o]; ++k) {
        const std::uint8_t* tap = src + (taps.first[o] + k) * s.tap_stride_in;
        const std::int32_t wk = w[k];
        for (int c = 0; c < s.channels; ++c) acc[c] += tap[c] * wk;
      }
      for (int c = 0; c < s.channels; ++c) dst[o * s.tap_stride_out + c] = clip8(acc[c]);
    }
  }
}

// Nearest neighbour: source index of each output index. Pillow walks the
// source coordinate of the pixel centres by repeated addition of the scale and
// truncates, so the rounding of that running sum decides ties; do the same.
std::vector<int> nearest_sources(int in_size, int out_size) {
  const double scale = static_cast<double>(in_size) / out_size;
  std::vector<int> sources(static_cast<std::size_t>(out_size));
  double coord = scale * 0.5;
  for (int o = 0; o < out_size; ++o, coord += scale) sources[o] = std::min(static_cast<int>(coord), in_size - 1);
  return sources;
}

// Everything about one resize that does not depend on the pixels.
struct Plan {
  int h, w, c, height, width;
  ResizeFilter filter;
  Taps horizontal, vertical;
  std::vector<int> rows, cols;  // nearest only
};

Plan make_plan(int h, int w, int c, int height, int width, ResizeFilter filter_kind) {
  Plan p{h, w, c, height, width, filter_kind, {}, {}, {}, {}};
  if (filter_kind == ResizeFilter::nearest) {
    p.rows = nearest_sources(h, height);
    p.cols = nearest_sources(w, width);
  } else {
    const Filter filter = filter_for(filter_kind);
    if (width != w) p.horizontal = precompute_taps(w, width, filter);
    if (height != h) p.vertical = precompute_taps(h, height, filter);
  }
  return p;
}

// One image [h, w, c] -> [height, width, c]. `scratch` holds the horizontal
// pass's result. Pillow skips a pass whose size does not change (no rounding
// there), and so do we.
void resize_one(const std::uint8_t* in, std::uint8_t* out, const Plan& p, std::vector<std::uint8_t>& scratch) {
  const int c = p.c;
  if (p.filter == ResizeFilter::nearest) {
    for (int y = 0; y < p.height; ++y)
      for (int x = 0; x < p.width; ++x)
        std::copy_n(in + (static_cast<std::ptrdiff_t>(p.rows[y]) * p.w + p.cols[x]) * c, c,
                    out + (static_cast<std::ptrdiff_t>(y) * p.width + x) * c);
    return;
  }
  const bool horizontal = p.width != p.w, vertical = p.height != p.h;
  const std::uint8_t* src = in;
  if (horizontal) {
    std::uint8_t* dst = vertical ? (scratch.resize(static_cast<std::size_t>(p.h) * p.width * c), scratch.data()) : out;
    convolve(src, dst, {p.h, p.w, p.width, c, std::ptrdiff_t{p.w} * c, std::ptrdiff_t{p.width} * c, c, c},
             p.horizontal);
    src = dst;
  }
  if (vertical) {
    // Each (column, channel) pair is a line; taps step by a whole row.
    const std::ptrdiff_t row = std::ptrdiff_t{p.width} * c;
    convolve(src, out, {1, p.h, p.height, p.width * c, 0, 0, row, row}, p.vertical);
  }
  if (!horizontal && !vertical) std::copy_n(in, static_cast<std::size_t>(p.h) * p.w * c, out);
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
  const bool batched = cpu.dim() == 4;
  const std::int64_t n = batched ? cpu.size(0) : 1;
  const int off = batched ? 1 : 0;
  const Plan plan =
      make_plan(static_cast<int>(cpu.size(off)), static_cast<int>(cpu.size(off + 1)),
                static_cast<int>(cpu.size(off + 2)), static_cast<int>(height), static_cast<int>(width), filter);
  at::Tensor out =
      batched ? at::empty({n, height, width, plan.c}, at::kByte) : at::empty({height, width, plan.c}, at::kByte);
  const std::int64_t in_stride = std::int64_t{plan.h} * plan.w * plan.c, out_stride = height * width * plan.c;
  std::vector<std::uint8_t> scratch;
  for (std::int64_t i = 0; i < n; ++i)
    resize_one(cpu.data_ptr<std::uint8_t>() + i * in_stride, out.data_ptr<std::uint8_t>() + i * out_stride, plan,
               scratch);
  return out.to(image.device());
}

}  // namespace dinv::io
