// The procedural 10-class dataset: the project's built-in default data.
// Each image is one shape (the class) drawn with random colour, position,
// size and small rotation on a random two-colour gradient background, with
// anti-aliased edges and Gaussian pixel noise. The class is only visible in
// the shape's geometry, which a small CNN learns and a linear model on
// pixels cannot (tests/data/test_shapes.py checks both sides). The same
// renderer makes a captioned corpus for pretraining (below).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

namespace dinv::data {

// How the background behind the shape is painted, from its two random colours:
//   gradient  a linear gradient between them (the default);
//   striped   soft stripes of the two colours, R/3 pixels apart, at a random
//             angle and phase.
// Striped is a domain of its own, for domain-shift experiments in miniature
// (docs/method.md): the labelled set can be drawn all striped (`dinv data
// shapes --background striped`), and a fraction of the captioned corpus
// (`--striped-fraction`, default 0) striped with captions that never say so,
// the way a web-scale corpus holds a little of a small dataset's style
// without naming it. A class-name prompt then asks for the corpus's usual
// backgrounds, while an image's inversion may reach its stripes.
enum class Background { gradient, striped };
const std::vector<std::string>& background_names();  // indexed by Background
Background parse_background(const std::string& name, const std::string& option);

struct ShapesOptions {
  std::int64_t train = 10000;
  std::int64_t test = 2000;
  std::uint64_t seed = 0;
  std::int64_t resolution = 32;
  Background background = Background::gradient;
};

const std::vector<std::string>& shapes_class_names();
// Every kind the renderer draws: the 10 class names, then the extra kinds of
// the captioned corpus (star, hexagon, arrow, semicircle).
const std::vector<std::string>& shape_kind_names();

// Image `index` of a split ("train" or "test"): uint8 [R, R, 3]. Depends only
// on (seed, split, index, resolution, background), so any part can be
// regenerated alone; the shape, its colours and place are the same for both
// backgrounds.
at::Tensor render_shape(std::int64_t label, std::uint64_t seed, const std::string& split, std::int64_t index,
                        std::int64_t resolution, Background background = Background::gradient);
// Labels of a split: balanced (index % 10) and then shuffled by the seed.
std::vector<std::int64_t> shapes_labels(std::int64_t count, std::uint64_t seed, const std::string& split);

// Write both splits under `dir`: CIFAR-10 binary batches at 32 px
// (data_batch_1..5.bin, test_batch.bin, batches.meta.txt), otherwise an image
// folder of PNGs (dir/train/<class>/<index>.png, dir/test/...).
void write_shapes(const std::string& dir, const ShapesOptions& options);

// The captioned corpus (`dinv data shapes --captioned`, the pretraining data
// of data/captioned.h): the 10 classes drawn exactly as in the labelled splits
// (same colour, size, position, rotation, background and noise ranges), plus
// kCaptionedExtraFraction of extra kinds, each with an English caption that
// names the shape as the class names do with '_' -> ' ' ("x cross"):
// "a small red ring on a dark blue background, top left". One caption in ten
// is just "a ring"; in the others each of size, colour, background and
// position is kept with probability 0.8. A fraction `striped_fraction` has a
// striped background (above), never named in the caption. Its own random
// stream (split id 3): none of its images is one of the labelled train/test
// images.
constexpr double kCaptionedExtraFraction = 0.15;

struct CaptionedShapesOptions {
  std::int64_t count = 20000;
  std::uint64_t seed = 0;
  std::int64_t resolution = 32;
  double striped_fraction = 0;  // in [0, 1]
};

struct CaptionedShape {
  at::Tensor image;  // uint8 [R, R, 3]
  std::string text;
  std::int64_t kind = 0;  // index into shape_kind_names()
};

// Depends only on (seed, index, resolution, striped_fraction); the images
// that stay gradient are the same for every striped_fraction.
CaptionedShape render_captioned_shape(std::uint64_t seed, std::int64_t index, std::int64_t resolution,
                                      double striped_fraction = 0);
// dir/metadata.jsonl ({"file_name": "images/000000.png", "text": ...} per
// line, written last) and dir/images/NNNNNN.png.
void write_captioned_shapes(const std::string& dir, const CaptionedShapesOptions& options);

}  // namespace dinv::data
