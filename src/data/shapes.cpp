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
#include "dinv/io/json.h"

namespace fs = std::filesystem;

namespace dinv::data {
namespace {

using Color = std::array<double, 3>;

std::uint64_t split_id(const std::string& split) { return split == "train" ? 1 : 2; }
// The captioned corpus's own stream: its images are none of the labelled splits'.
constexpr std::uint64_t kCaptionedSplitId = 3;

// Even-odd rule: is (u, v) inside the closed polygon `p`?
bool in_polygon(const std::vector<std::array<double, 2>>& p, double u, double v) {
  bool in = false;
  for (std::size_t i = 0, j = p.size() - 1; i < p.size(); j = i++)
    if ((p[i][1] > v) != (p[j][1] > v) && u < (p[j][0] - p[i][0]) * (v - p[i][1]) / (p[j][1] - p[i][1]) + p[i][0])
      in = !in;
  return in;
}

// Is the point (u, v), in shape coordinates (the shape fills [-1, 1]^2, v
// pointing down), inside the shape of kind `kind` (a class label, or an extra
// kind of the captioned corpus)?
bool inside(std::int64_t kind, double u, double v) {
  const double au = std::fabs(u), av = std::fabs(v), r2 = u * u + v * v;
  switch (kind) {
    case 0:
      return r2 <= 0.95 * 0.95;  // disk
    case 1:
      return std::max(au, av) <= 0.8;  // square
    case 2:
      return v <= 0.75 && au <= 0.9 * (v + 0.9) / 1.65;  // triangle
    case 3:
      return (au <= 0.28 && av <= 0.95) || (av <= 0.28 && au <= 0.95);  // plus
    case 4:
      return r2 <= 0.95 * 0.95 && r2 >= 0.55 * 0.55;  // ring
    case 5:
      return au + av <= 1.0;  // diamond
    case 6:
      return std::max(au, av) <= 0.85 && std::max(au, av) >= 0.5;  // frame
    case 7: {                                                      // x_cross
      const double p = std::fabs(u + v) / std::sqrt(2.0), q = std::fabs(u - v) / std::sqrt(2.0);
      return (p <= 0.22 && q <= 1.0) || (q <= 0.22 && p <= 1.0);
    }
    case 8:
      return au <= 0.9 && (std::fabs(v - 0.5) <= 0.24 || std::fabs(v + 0.5) <= 0.24);  // bars
    case 9:
      return r2 <= 0.95 * 0.95 && (u - 0.45) * (u - 0.45) + v * v >= 0.7 * 0.7;  // crescent
    // The captioned corpus's extra kinds (kShapeClasses.. of shape_kind_names()).
    case 10: {  // star: 5 points
      static const auto star = [] {
        std::vector<std::array<double, 2>> p;
        for (int k = 0; k < 10; ++k) {
          const double a = -1.5707963267948966 + k * 0.6283185307179586, r = k % 2 ? 0.42 : 0.98;
          p.push_back({r * std::cos(a), r * std::sin(a) + 0.08});
        }
        return p;
      }();
      return in_polygon(star, u, v);
    }
    case 11:
      return av <= 0.82 && au * 0.866 + av * 0.5 <= 0.82;  // hexagon
    case 12:
      return (u >= -0.9 && u <= 0.1 && av <= 0.24) || (u >= 0.1 && av <= 0.75 * (0.9 - u) / 0.8);  // arrow
    default:
      return r2 <= 0.95 * 0.95 && v <= 0.25;  // semicircle
  }
}

Color random_color(Rng& rng) { return {rng.uniform(0, 255), rng.uniform(0, 255), rng.uniform(0, 255)}; }

double distance(const Color& a, const Color& b) {
  return std::fabs(a[0] - b[0]) + std::fabs(a[1] - b[1]) + std::fabs(a[2] - b[2]);
}

}  // namespace

const std::vector<std::string>& shapes_class_names() {
  static const std::vector<std::string> names{"disk",    "square", "triangle", "plus", "ring",
                                              "diamond", "frame",  "x_cross",  "bars", "crescent"};
  return names;
}

const std::vector<std::string>& shape_kind_names() {
  static const std::vector<std::string> names = [] {
    auto all = shapes_class_names();
    for (const char* extra : {"star", "hexagon", "arrow", "semicircle"}) all.push_back(extra);
    return all;
  }();
  return names;
}

namespace {

// The random draws of one image, in pixel units: the labelled splits and the
// captioned corpus draw them the same way, so they share one distribution.
struct ShapeParams {
  Color bg0, bg1, fg;
  double gradient_angle, scale, cx, cy, angle, aspect, noise_sigma;
  bool striped = false;
  double stripe_angle = 0, stripe_phase = 0;
};

// The stripes come from a stream of their own (`style`), so that an image's
// other draws, and its pixel noise, are those of its gradient twin.
void draw_stripes(ShapeParams& p, Rng& style) {
  p.striped = true;
  p.stripe_angle = style.uniform(0, 3.141592653589793);
  p.stripe_phase = style.uniform(0, 6.283185307179586);
}

// The weight of bg1 in the background at pixel (x, y).
double background_mix(const ShapeParams& p, std::int64_t x, std::int64_t y, double R) {
  if (p.striped) {
    const double along = (x + 0.5) * std::cos(p.stripe_angle) + (y + 0.5) * std::sin(p.stripe_angle);
    const double wave = std::sin(6.283185307179586 * along / (R / 3) + p.stripe_phase);
    return std::clamp(0.5 + 1.2 * wave, 0.0, 1.0);  // soft edges, flat tops
  }
  const double gx = std::cos(p.gradient_angle), gy = std::sin(p.gradient_angle);
  return 0.5 + 0.5 * ((x / R - 0.5) * gx + (y / R - 0.5) * gy) * 1.41421356;
}

ShapeParams draw_params(Rng& rng, double R) {
  ShapeParams p;
  p.bg0 = random_color(rng);
  p.bg1 = random_color(rng);
  p.fg = random_color(rng);
  // Keep the shape visible against the mean background colour.
  const Color bg_mean{(p.bg0[0] + p.bg1[0]) / 2, (p.bg0[1] + p.bg1[1]) / 2, (p.bg0[2] + p.bg1[2]) / 2};
  for (int tries = 0; tries < 100 && distance(p.fg, bg_mean) < 200; ++tries) p.fg = random_color(rng);
  p.gradient_angle = rng.uniform(0, 6.283185307179586);
  p.scale = rng.uniform(0.28, 0.40) * R;     // half-size of the shape in pixels
  p.cx = rng.uniform(p.scale, R - p.scale);  // the shape stays inside
  p.cy = rng.uniform(p.scale, R - p.scale);
  p.angle = rng.uniform(-0.35, 0.35);  // about +-20 degrees: square and diamond stay apart
  p.aspect = rng.uniform(0.85, 1.15);
  p.noise_sigma = rng.uniform(0.0, 10.0);
  return p;
}

// Shape `kind` with parameters `p` on its gradient; the pixel noise comes from `rng`.
at::Tensor paint(std::int64_t kind, const ShapeParams& p, Rng& rng, std::int64_t resolution) {
  const double R = static_cast<double>(resolution);
  const double ca = std::cos(p.angle), sa = std::sin(p.angle);
  auto image = at::empty({resolution, resolution, 3}, at::kByte);
  auto* out = image.data_ptr<std::uint8_t>();
  constexpr int kSub = 3;  // 3x3 supersampling for anti-aliased edges
  for (std::int64_t y = 0; y < resolution; ++y) {
    for (std::int64_t x = 0; x < resolution; ++x) {
      int covered = 0;
      for (int sy = 0; sy < kSub; ++sy)
        for (int sx = 0; sx < kSub; ++sx) {
          const double px = x + (sx + 0.5) / kSub - p.cx, py = y + (sy + 0.5) / kSub - p.cy;
          const double u = (ca * px + sa * py) / (p.scale * p.aspect), v = (-sa * px + ca * py) / (p.scale / p.aspect);
          covered += inside(kind, u, v);
        }
      const double alpha = static_cast<double>(covered) / (kSub * kSub);
      const double t = background_mix(p, x, y, R);
      for (int c = 0; c < 3; ++c) {
        const double background = p.bg0[c] * (1 - t) + p.bg1[c] * t;
        const double value = background * (1 - alpha) + p.fg[c] * alpha + p.noise_sigma * rng.normal();
        out[(y * resolution + x) * 3 + c] = static_cast<std::uint8_t>(std::clamp(std::lround(value), 0L, 255L));
      }
    }
  }
  return image;
}

}  // namespace

const std::vector<std::string>& background_names() {
  static const std::vector<std::string> names{"gradient", "striped"};
  return names;
}

Background parse_background(const std::string& name, const std::string& option) {
  const auto& names = background_names();
  for (std::size_t i = 0; i < names.size(); ++i)
    if (name == names[i]) return static_cast<Background>(i);
  throw ConfigError(option + " = '" + name + "' is not a background: expected gradient or striped");
}

at::Tensor render_shape(std::int64_t label, std::uint64_t seed, const std::string& split, std::int64_t index,
                        std::int64_t resolution, Background background) {
  const auto i = static_cast<std::uint64_t>(index);
  Rng rng(mix_seed({seed, split_id(split), i}));
  auto params = draw_params(rng, static_cast<double>(resolution));
  if (background == Background::striped) {
    Rng style(mix_seed({seed, split_id(split), i, 2}));
    draw_stripes(params, style);
  }
  return paint(label, params, rng, resolution);
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
std::vector<std::uint8_t> cifar_records(const std::vector<std::int64_t>& labels, const ShapesOptions& o,
                                        const std::string& split, std::int64_t begin, std::int64_t end) {
  std::vector<std::uint8_t> bytes;
  bytes.reserve(static_cast<std::size_t>((end - begin) * 3073));
  for (std::int64_t i = begin; i < end; ++i) {
    auto planes = render_shape(labels[i], o.seed, split, i, 32, o.background).permute({2, 0, 1}).contiguous();
    bytes.push_back(static_cast<std::uint8_t>(labels[i]));
    const auto* p = planes.data_ptr<std::uint8_t>();
    bytes.insert(bytes.end(), p, p + 3072);
  }
  return bytes;
}

void write_cifar_split(const fs::path& dir, const ShapesOptions& o, const std::string& split, std::int64_t count) {
  const auto labels = shapes_labels(count, o.seed, split);
  if (split == "test") {
    write_bytes(dir / "test_batch.bin", cifar_records(labels, o, split, 0, count));
    return;
  }
  // Up to five batches, as CIFAR-10 has; a count that leaves the last ones
  // empty (6 images: 2, 2, 2) writes fewer files rather than empty ones.
  const std::int64_t per_batch = (count + 4) / 5;
  for (int k = 0; k < 5; ++k) {
    const std::int64_t begin = std::min(count, k * per_batch), end = std::min(count, (k + 1) * per_batch);
    if (k > 0 && begin == end) break;
    write_bytes(dir / ("data_batch_" + std::to_string(k + 1) + ".bin"), cifar_records(labels, o, split, begin, end));
  }
}

void write_folder_split(const fs::path& dir, const ShapesOptions& o, const std::string& split, std::int64_t count) {
  const auto labels = shapes_labels(count, o.seed, split);
  for (const auto& name : shapes_class_names()) fs::create_directories(dir / split / name);
  for (std::int64_t i = 0; i < count; ++i) {
    char file[32];
    std::snprintf(file, sizeof file, "%06lld.png", static_cast<long long>(i));
    write_png((dir / split / shapes_class_names()[labels[i]] / file).string(),
              render_shape(labels[i], o.seed, split, i, o.resolution, o.background));
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

// ---- The captioned corpus ------------------------------------------------

namespace {

struct NamedColor {
  const char* name;
  Color rgb;
};

// Nearest-colour names for the captions (uniform random RGB colours land on
// every entry).
const std::vector<NamedColor>& color_names() {
  static const std::vector<NamedColor> table{{"black", {0, 0, 0}},
                                             {"dark gray", {80, 80, 80}},
                                             {"gray", {140, 140, 140}},
                                             {"light gray", {200, 200, 200}},
                                             {"white", {255, 255, 255}},
                                             {"red", {220, 20, 20}},
                                             {"dark red", {130, 10, 10}},
                                             {"pink", {250, 160, 190}},
                                             {"orange", {250, 140, 20}},
                                             {"brown", {140, 80, 30}},
                                             {"yellow", {245, 230, 40}},
                                             {"olive", {130, 130, 20}},
                                             {"light green", {150, 240, 130}},
                                             {"green", {40, 180, 40}},
                                             {"dark green", {10, 100, 20}},
                                             {"teal", {20, 130, 130}},
                                             {"cyan", {40, 220, 220}},
                                             {"light blue", {140, 190, 250}},
                                             {"blue", {30, 70, 230}},
                                             {"dark blue", {10, 20, 130}},
                                             {"purple", {120, 30, 150}},
                                             {"magenta", {230, 40, 220}}};
  return table;
}

std::string color_name(const Color& c) {
  const NamedColor* best = nullptr;
  double best_d = 0;
  for (const auto& n : color_names()) {
    const double d = (c[0] - n.rgb[0]) * (c[0] - n.rgb[0]) + (c[1] - n.rgb[1]) * (c[1] - n.rgb[1]) +
                     (c[2] - n.rgb[2]) * (c[2] - n.rgb[2]);
    if (!best || d < best_d) best = &n, best_d = d;
  }
  return best->name;
}

// "a" or "an" before `word` (by its first letter: "an orange disk", "a ring").
std::string article(const std::string& word) {
  return std::string("aeiou").find(word.front()) != std::string::npos ? "an " : "a ";
}

std::string spoken(std::string name) {
  std::replace(name.begin(), name.end(), '_', ' ');
  return name;
}

// "small" / "medium" / "large": thirds of the half-size range 0.28..0.40 R.
std::string size_word(double scale, double R) {
  const double f = (scale / R - 0.28) / 0.12;
  return f < 1.0 / 3 ? "small" : f < 2.0 / 3 ? "medium" : "large";
}

// Thirds of the range the centre can take (the shape stays inside the image).
std::string position_words(const ShapeParams& p, double R) {
  const double span = std::max(R - 2 * p.scale, 1e-9);
  auto third = [](double f) { return f < 1.0 / 3 ? 0 : f < 2.0 / 3 ? 1 : 2; };
  const int col = third((p.cx - p.scale) / span), row = third((p.cy - p.scale) / span);
  static const char* names[3][3] = {
      {"top left", "top", "top right"}, {"left", "center", "right"}, {"bottom left", "bottom", "bottom right"}};
  return names[row][col];
}

}  // namespace

CaptionedShape render_captioned_shape(std::uint64_t seed, std::int64_t index, std::int64_t resolution,
                                      double striped_fraction) {
  const auto i = static_cast<std::uint64_t>(index);
  Rng rng(mix_seed({seed, kCaptionedSplitId, i}));
  const std::int64_t classes = static_cast<std::int64_t>(shapes_class_names().size());
  const std::int64_t extras = static_cast<std::int64_t>(shape_kind_names().size()) - classes;
  CaptionedShape out;
  out.kind = rng.bernoulli(kCaptionedExtraFraction) ? classes + static_cast<std::int64_t>(rng.below(extras))
                                                    : static_cast<std::int64_t>(rng.below(classes));
  const double R = static_cast<double>(resolution);
  auto p = draw_params(rng, R);
  Rng style(mix_seed({seed, kCaptionedSplitId, i, 2}));
  if (style.bernoulli(striped_fraction)) draw_stripes(p, style);
  out.image = paint(out.kind, p, rng, resolution);
  // The wording has its own stream. One caption in ten is the bare "a ring";
  // the others name the size, colour, background and position, each kept
  // with probability 0.8, so that short prompts are in-distribution too.
  Rng words(mix_seed({seed, kCaptionedSplitId, i, 1}));
  const std::string shape = spoken(shape_kind_names()[out.kind]);
  if (words.bernoulli(0.1)) {
    out.text = article(shape) + shape;
    return out;
  }
  const bool size = words.bernoulli(0.8), color = words.bernoulli(0.8), background = words.bernoulli(0.8),
             position = words.bernoulli(0.8);
  const Color bg_mean{(p.bg0[0] + p.bg1[0]) / 2, (p.bg0[1] + p.bg1[1]) / 2, (p.bg0[2] + p.bg1[2]) / 2};
  std::string phrase;
  if (size) phrase += size_word(p.scale, R) + " ";
  if (color) phrase += color_name(p.fg) + " ";
  phrase += shape;
  out.text = article(phrase) + phrase;
  if (background) {
    const auto bg = color_name(bg_mean);
    out.text += " on " + article(bg) + bg + " background";
  }
  if (position) out.text += ", " + position_words(p, R);
  return out;
}

void write_captioned_shapes(const std::string& dir, const CaptionedShapesOptions& o) {
  if (o.count < 1)
    throw ConfigError("shapes --captioned: --count must be at least 1, found " + std::to_string(o.count));
  if (!(o.striped_fraction >= 0 && o.striped_fraction <= 1))
    throw ConfigError("shapes --captioned: --striped-fraction must be in [0, 1], found " +
                      std::to_string(o.striped_fraction));
  if (o.resolution < 8 || o.resolution > 1024)
    throw ConfigError("shapes: --resolution must be in [8, 1024], found " + std::to_string(o.resolution));
  std::error_code ec;
  fs::create_directories(fs::path(dir) / "images", ec);
  if (ec) throw IoError("cannot create output folder '" + (fs::path(dir) / "images").string() + "': " + ec.message());
  std::string metadata;
  for (std::int64_t i = 0; i < o.count; ++i) {
    char file[32];
    std::snprintf(file, sizeof file, "images/%06lld.png", static_cast<long long>(i));
    const auto example = render_captioned_shape(o.seed, i, o.resolution, o.striped_fraction);
    write_png((fs::path(dir) / file).string(), example.image);
    metadata += io::Json{{"file_name", file}, {"text", example.text}}.dump() + "\n";
  }
  // Last, so that a folder with metadata.jsonl is a complete corpus.
  write_bytes(fs::path(dir) / "metadata.jsonl", std::vector<std::uint8_t>(metadata.begin(), metadata.end()));
}

}  // namespace dinv::data
