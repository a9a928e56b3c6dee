#include "dinv/data/shapes.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "dinv/core/error.h"
#include "dinv/data/codec.h"
#include "dinv/data/rng.h"

namespace fs = std::filesystem;

namespace dinv::data {
namespace {

using Color = std::array<double, 3>;

std::uint64_t split_id(const std::string& split) { return split == "train" ? 1 : 2; }

// Is the point (u, v), in shape coordinates (the shape fills [-1, 1]^2, v
// pointing down), inside the shape of class `label`?
bool inside(std::int64_t label, double u, double v) {
  const double au = std::fabs(u), av = std::fabs(v), r2 = u * u + v * v;
  switch (label) {
    case 0: return r2 <= 0.95 * 0.95;                                           // disk
    case 1: return std::max(au, av) <= 0.8;                                     // square
    case 2: return v <= 0.75 && au <= 0.9 * (v + 0.9) / 1.65;                   // triangle
    case 3: return (au <= 0.28 && av <= 0.95) || (av <= 0.28 && au <= 0.95);    // plus
    case 4: return r2 <= 0.95 * 0.95 && r2 >= 0.55 * 0.55;                      // ring
    case 5: return au + av <= 1.0;                                              // diamond
    case 6: return std::max(au, av) <= 0.85 && std::max(au, av) >= 0.5;         // frame
    case 7: {                                                                   // x_cross
      const double p = std::fabs(u + v) / std::sqrt(2.0), q = std::fabs(u - v) / std::sqrt(2.0);
      return (p <= 0.22 && q <= 1.0) || (q <= 0.22 && p <= 1.0);
    }
    case 8: return au <= 0.9 && (std::fabs(v - 0.5) <= 0.24 || std::fabs(v + 0.5) <= 0.24);  // bars
    default: return r2 <= 0.95 * 0.95 && (u - 0.45) * (u - 0.45) + v * v >= 0.7 * 0.7;     // crescent
  }
}

Color random_color(Rng& rng) { return {rng.uniform(0, 255), rng.uniform(0, 255), rng.uniform(0, 255)}; }

double distance(const Color& a, const Color& b) {
  return std::fabs(a[0] - b[0]) + std::fabs(a[1] - b[1]) + std::fabs(a[2] - b[2]);
}

}  // namespace

const std::vector<std::string>& shapes_class_names() {
  static const std::vector<std::string> names{"disk", "square", "triangle", "plus", "ring",
                                              "diamond", "frame", "x_cross", "bars", "crescent"};
  return names;
}

at::Tensor render_shape(std::int64_t label, std::uint64_t seed, const std::string& split, std::int64_t index,
                        std::int64_t resolution) {
  Rng rng(mix_seed({seed, split_id(split), static_cast<std::uint64_t>(index)}));
  const double R = static_cast<double>(resolution);
  const Color bg0 = random_color(rng), bg1 = random_color(rng);
  Color fg = random_color(rng);
  // Keep the shape visible against the mean background colour.
  const Color bg_mean{(bg0[0] + bg1[0]) / 2, (bg0[1] + bg1[1]) / 2, (bg0[2] + bg1[2]) / 2};
  for (int tries = 0; tries < 100 && distance(fg, bg_mean) < 200; ++tries) fg = random_color(rng);
  const double gradient_angle = rng.uniform(0, 6.283185307179586);
  const double scale = rng.uniform(0.28, 0.40) * R;  // half-size of the shape in pixels
  const double cx = rng.uniform(scale, R - scale), cy = rng.uniform(scale, R - scale);  // shape stays inside
  const double angle = rng.uniform(-0.35, 0.35);  // about +-20 degrees: square and diamond stay apart
  const double aspect = rng.uniform(0.85, 1.15);
  const double noise_sigma = rng.uniform(0.0, 10.0);
  const double ca = std::cos(angle), sa = std::sin(angle);
  const double gx = std::cos(gradient_angle), gy = std::sin(gradient_angle);

  auto image = at::empty({resolution, resolution, 3}, at::kByte);
  auto* out = image.data_ptr<std::uint8_t>();
  constexpr int kSub = 3;  // 3x3 supersampling for anti-aliased edges
  for (std::int64_t y = 0; y < resolution; ++y) {
    for (std::int64_t x = 0; x < resolution; ++x) {
      int covered = 0;
      for (int sy = 0; sy < kSub; ++sy)
        for (int sx = 0; sx < kSub; ++sx) {
          const double px = x + (sx + 0.5) / kSub - cx, py = y + (sy + 0.5) / kSub - cy;
          const double u = (ca * px + sa * py) / (scale * aspect), v = (-sa * px + ca * py) / (scale / aspect);
          covered += inside(label, u, v);
        }
      const double alpha = static_cast<double>(covered) / (kSub * kSub);
      const double t = 0.5 + 0.5 * ((x / R - 0.5) * gx + (y / R - 0.5) * gy) * 1.41421356;
      for (int c = 0; c < 3; ++c) {
        const double background = bg0[c] * (1 - t) + bg1[c] * t;
        const double value = background * (1 - alpha) + fg[c] * alpha + noise_sigma * rng.normal();
        out[(y * resolution + x) * 3 + c] = static_cast<std::uint8_t>(std::clamp(std::lround(value), 0L, 255L));
      }
    }
  }
  return image;
}

std::vector<std::int64_t> shapes_labels(std::int64_t count, std::uint64_t seed, const std::string& split) {
  std::vector<std::int64_t> labels(count);
  for (std::int64_t i = 0; i < count; ++i) labels[i] = i % 10;
  Rng rng(mix_seed({seed, split_id(split), 0xABCDEFull}));
  for (std::int64_t i = count - 1; i > 0; --i)
    std::swap(labels[i], labels[rng.below(static_cast<std::uint64_t>(i + 1))]);
  return labels;
}

namespace {

void write_bytes(const fs::path& path, const std::vector<std::uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw IoError("cannot write " + std::to_string(bytes.size()) + " bytes to '" + path.string() + "'");
}

// CIFAR-10 records [begin, end) of a split: label byte, then R, G, B planes.
std::vector<std::uint8_t> cifar_records(const std::vector<std::int64_t>& labels, std::uint64_t seed,
                                        const std::string& split, std::int64_t begin, std::int64_t end) {
  std::vector<std::uint8_t> bytes;
  bytes.reserve(static_cast<std::size_t>((end - begin) * 3073));
  for (std::int64_t i = begin; i < end; ++i) {
    auto planes = render_shape(labels[i], seed, split, i, 32).permute({2, 0, 1}).contiguous();
    bytes.push_back(static_cast<std::uint8_t>(labels[i]));
    const auto* p = planes.data_ptr<std::uint8_t>();
    bytes.insert(bytes.end(), p, p + 3072);
  }
  return bytes;
}

void write_cifar_split(const fs::path& dir, const ShapesOptions& o, const std::string& split, std::int64_t count) {
  const auto labels = shapes_labels(count, o.seed, split);
  if (split == "test") {
    write_bytes(dir / "test_batch.bin", cifar_records(labels, o.seed, split, 0, count));
    return;
  }
  const std::int64_t per_batch = (count + 4) / 5;  // five batches, as CIFAR-10 has
  for (int k = 0; k < 5; ++k) {
    const std::int64_t begin = std::min(count, k * per_batch), end = std::min(count, (k + 1) * per_batch);
    write_bytes(dir / ("data_batch_" + std::to_string(k + 1) + ".bin"), cifar_records(labels, o.seed, split, begin, end));
  }
}

void write_folder_split(const fs::path& dir, const ShapesOptions& o, const std::string& split, std::int64_t count) {
  const auto labels = shapes_labels(count, o.seed, split);
  for (const auto& name : shapes_class_names()) fs::create_directories(dir / split / name);
  for (std::int64_t i = 0; i < count; ++i) {
    char file[32];
    std::snprintf(file, sizeof file, "%06lld.png", static_cast<long long>(i));
    write_png((dir / split / shapes_class_names()[labels[i]] / file).string(),
              render_shape(labels[i], o.seed, split, i, o.resolution));
  }
}

}  // namespace

void write_shapes(const std::string& dir, const ShapesOptions& o) {
  if (o.train < 10 || o.test < 10)
    throw ConfigError("shapes: --train and --test must be at least 10 (one image per class), found " +
                      std::to_string(o.train) + " and " + std::to_string(o.test));
  if (o.resolution < 8 || o.resolution > 1024)
    throw ConfigError("shapes: --resolution must be in [8, 1024], found " + std::to_string(o.resolution));
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw IoError("cannot create output folder '" + dir + "': " + ec.message());
  if (o.resolution == 32) {
    write_cifar_split(dir, o, "train", o.train);
    write_cifar_split(dir, o, "test", o.test);
    std::string meta;
    for (const auto& n : shapes_class_names()) meta += n + "\n";
    write_bytes(fs::path(dir) / "batches.meta.txt", std::vector<std::uint8_t>(meta.begin(), meta.end()));
  } else {
    write_folder_split(dir, o, "train", o.train);
    write_folder_split(dir, o, "test", o.test);
  }
}

}  // namespace dinv::data
