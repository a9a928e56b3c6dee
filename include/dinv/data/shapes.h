// The procedural 10-class dataset: the project's built-in default data.
// Each image is one shape (the class) drawn with random colour, position,
// size and small rotation on a random two-colour gradient background, with
// anti-aliased edges and Gaussian pixel noise. The class is only visible in
// the shape's geometry, which a small CNN learns and a linear model on
// pixels cannot (tests/data/test_shapes.py checks both sides).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

namespace dinv::data {

struct ShapesOptions {
  std::int64_t train = 10000;
  std::int64_t test = 2000;
  std::uint64_t seed = 0;
  std::int64_t resolution = 32;
};

const std::vector<std::string>& shapes_class_names();

// Image `index` of a split ("train" or "test"): uint8 [R, R, 3]. Depends only
// on (seed, split, index, resolution), so any part can be regenerated alone.
at::Tensor render_shape(std::int64_t label, std::uint64_t seed, const std::string& split, std::int64_t index,
                        std::int64_t resolution);
// Labels of a split: balanced (index % 10) and then shuffled by the seed.
std::vector<std::int64_t> shapes_labels(std::int64_t count, std::uint64_t seed, const std::string& split);

// Write both splits under `dir`: CIFAR-10 binary batches at 32 px
// (data_batch_1..5.bin, test_batch.bin, batches.meta.txt), otherwise an image
// folder of PNGs (dir/train/<class>/<index>.png, dir/test/...).
void write_shapes(const std::string& dir, const ShapesOptions& options);

}  // namespace dinv::data
