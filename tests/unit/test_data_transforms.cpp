// Transforms, mixing, subsets and the loader (single process).
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <set>

#include "dinv/core/error.h"
#include "dinv/data/loader.h"
#include "dinv/data/readers.h"
#include "dinv/data/subset.h"
#include "dinv/data/transforms.h"

namespace dinv::data {
namespace {

at::Tensor ramp_image(std::int64_t h, std::int64_t w) {  // pixel (y, x, c) = 10y + x + 100c (mod 256)
  auto y = at::arange(h, at::kLong).view({h, 1, 1}), x = at::arange(w, at::kLong).view({1, w, 1});
  auto c = at::arange(3, at::kLong).view({1, 1, 3});
  return (y * 10 + x + c * 100).remainder(256).to(at::kByte);
}

std::uint8_t px(const at::Tensor& t, std::int64_t y, std::int64_t x, std::int64_t c) {
  return t.index({y, x, c}).item<std::uint8_t>();
}

TEST(DataTransforms, FlipAndCropsMovePixelsExactly) {
  const auto image = ramp_image(6, 8);
  const auto flipped = horizontal_flip(image);
  for (int y = 0; y < 6; ++y)
    for (int x = 0; x < 8; ++x) EXPECT_EQ(px(flipped, y, x, 1), px(image, y, 7 - x, 1));
  const auto center = center_crop(image, 4, 4);  // top = round(1.0) = 1, left = round(2.0) = 2
  EXPECT_EQ(center.sizes(), (at::IntArrayRef{4, 4, 3}));
  EXPECT_EQ(px(center, 0, 0, 0), px(image, 1, 2, 0));
  EXPECT_EQ(px(center, 3, 3, 2), px(image, 4, 5, 2));
  // Random crop with padding 2: the window is the padded image shifted, zeros outside.
  Rng rng(5);
  std::set<std::pair<std::int64_t, std::int64_t>> offsets;
  for (int trial = 0; trial < 200; ++trial) {
    const auto crop = random_crop(image, 6, 2, rng);
    ASSERT_EQ(crop.sizes(), (at::IntArrayRef{6, 6, 3}));
    bool matched = false;
    for (int top = 0; top <= 4 && !matched; ++top)
      for (int left = 0; left <= 6 && !matched; ++left) {
        auto padded = at::zeros({10, 12, 3}, at::kByte);
        padded.narrow(0, 2, 6).narrow(1, 2, 8).copy_(image);
        if (at::equal(padded.narrow(0, top, 6).narrow(1, left, 6), crop)) matched = true, offsets.insert({top, left});
      }
    EXPECT_TRUE(matched);
  }
  EXPECT_EQ(offsets.size(), 5u * 7u) << "every window position is drawn";
  EXPECT_THROW(center_crop(image, 7, 4), Error);
}

TEST(DataTransforms, NormaliseGivesChwValues) {
  auto image = at::zeros({2, 3, 3}, at::kByte);
  image.index_put_({0, 1, 0}, 255);
  image.index_put_({1, 2, 2}, 51);
  const auto norm = mean_std("cifar10");
  const auto out = to_normalized_chw(image, norm);
  EXPECT_EQ(out.sizes(), (at::IntArrayRef{3, 2, 3}));
  EXPECT_EQ(out.scalar_type(), at::kFloat);
  EXPECT_FLOAT_EQ(out.index({0, 0, 1}).item<float>(), (1.0f - 0.4914f) / 0.2470f);
  EXPECT_FLOAT_EQ(out.index({2, 1, 2}).item<float>(), (0.2f - 0.4465f) / 0.2616f);
  EXPECT_FLOAT_EQ(out.index({1, 0, 0}).item<float>(), (0.0f - 0.4822f) / 0.2435f);
  EXPECT_FLOAT_EQ(mean_std("stl10").std[2], 0.2713f);
  EXPECT_FLOAT_EQ(mean_std("medmnist").mean[0], 0.5f);
  EXPECT_THROW(mean_std("mnist"), ConfigError);
}

TEST(DataTransforms, AutoAugmentIsDeterministicForASeedAndChangesImages) {
  const auto image = ramp_image(32, 32);
  int changed = 0;
  for (std::uint64_t seed = 0; seed < 100; ++seed) {
    Rng a(seed), b(seed);
    const auto x = auto_augment_cifar10(image, a), y = auto_augment_cifar10(image, b);
    ASSERT_TRUE(at::equal(x, y)) << "seed " << seed;
    ASSERT_EQ(x.sizes(), image.sizes());
    ASSERT_EQ(x.scalar_type(), at::kByte);
    changed += !at::equal(x, image);
  }
  EXPECT_GT(changed, 40);  // most sub-policies apply at least one op
  EXPECT_LT(changed, 100);
}

TEST(DataTransforms, MixupMixesImagesAndLabelsWithTheSameLambda) {
  Rng rng(3);
  auto images = at::rand({8, 3, 16, 16});
  auto labels = at::arange(8, at::kLong);  // unique labels: labels_b names the partner
  for (int trial = 0; trial < 5; ++trial) {
    const auto m = mixup(images, labels, 0.4, rng);
    ASSERT_GE(m.lambda, 0.0);
    ASSERT_LE(m.lambda, 1.0);
    EXPECT_TRUE(at::equal(m.labels_a, labels));
    EXPECT_TRUE(at::allclose(m.images, images * m.lambda + images.index_select(0, m.labels_b) * (1.0 - m.lambda)));
    const auto soft = m.soft_targets(8);
    EXPECT_TRUE(at::allclose(soft.sum(1), at::ones({8})));
    for (int i = 0; i < 8; ++i) {
      const auto b = m.labels_b[i].item<std::int64_t>();
      const float expected = b == i ? 1.0f : static_cast<float>(m.lambda);
      EXPECT_FLOAT_EQ(soft.index({i, i}).item<float>(), expected);
      if (b != i) EXPECT_FLOAT_EQ(soft.index({i, b}).item<float>(), static_cast<float>(1.0 - m.lambda));
    }
  }
}

TEST(DataTransforms, CutmixLambdaIsThePastedArea) {
  Rng rng(9);
  auto images = at::arange(4, at::kFloat).view({4, 1, 1, 1}).expand({4, 3, 10, 10}).contiguous();
  auto labels = at::arange(4, at::kLong);
  for (int trial = 0; trial < 20; ++trial) {
    const auto c = cutmix(images, labels, 1.0, rng);
    for (int i = 0; i < 4; ++i) {
      const double own = (c.images[i] == static_cast<float>(i)).to(at::kFloat).mean().item<double>();
      if (c.labels_b[i].item<std::int64_t>() != i) EXPECT_NEAR(own, c.lambda, 1e-6) << "trial " << trial;
    }
  }
}

TEST(DataSubset, GroupsAreConsecutiveIndicesChosenBySeed) {
  const auto a = subset_indices(1050, 300, 100, 1), b = subset_indices(1050, 300, 100, 1);
  EXPECT_EQ(a, b);
  ASSERT_EQ(a.size(), 300u);
  for (int g = 0; g < 3; ++g) {
    EXPECT_EQ(a[g * 100] % 100, 0);
    for (int k = 1; k < 100; ++k) EXPECT_EQ(a[g * 100 + k], a[g * 100] + k);
  }
  EXPECT_LT(a.back(), 1000) << "the short last group is never chosen";
  EXPECT_TRUE(std::is_sorted(a.begin(), a.end()));
  std::set<std::vector<std::int64_t>> draws;
  for (std::uint64_t s = 0; s < 10; ++s) draws.insert(subset_indices(1050, 300, 100, s));
  EXPECT_GT(draws.size(), 5u);
  EXPECT_THROW(subset_indices(1050, 1100, 100, 0), ConfigError);
  EXPECT_THROW(subset_indices(1050, 250, 100, 0), ConfigError);
}

DatasetPtr small_dataset(std::int64_t n) {
  auto images = at::arange(n * 4 * 4 * 3, at::kLong).remainder(256).to(at::kByte).view({n, 4, 4, 3});
  return std::make_shared<TensorDataset>(images, at::arange(n, at::kLong).remainder(3),
                                         std::vector<std::string>{"x", "y", "z"}, "fp", "small");
}

SamplerOptions sampler_options(std::int64_t n, std::int64_t b) {
  SamplerOptions o;
  o.dataset_size = n;
  o.batch_size = b;
  o.seed = 4;
  return o;
}

TEST(DataLoader, SameBatchesForAnyNumberOfWorkers) {
  auto dataset = small_dataset(37);
  ExampleTransform transform = [](const at::Tensor& image, Rng& rng) {
    return to_normalized_chw(random_horizontal_flip(random_crop(image, 4, 1, rng), rng), {});
  };
  std::vector<std::vector<Batch>> runs;
  for (int workers : {0, 1, 3}) {
    LoaderOptions lo;
    lo.workers = workers;
    lo.prefetch = 2;
    Loader loader(dataset, sampler_options(37, 5), transform, lo);
    EXPECT_EQ(loader.steps_per_epoch(), 7);
    runs.emplace_back();
    for (int i = 0; i < 16; ++i) runs.back().push_back(loader.next());
  }
  for (std::size_t r = 1; r < runs.size(); ++r)
    for (int i = 0; i < 16; ++i) {
      EXPECT_TRUE(at::equal(runs[r][i].images, runs[0][i].images)) << "workers run " << r << " batch " << i;
      EXPECT_TRUE(at::equal(runs[r][i].labels, runs[0][i].labels));
      EXPECT_EQ(runs[r][i].epoch, i / 7);
      EXPECT_EQ(runs[r][i].step, i % 7);
    }
  EXPECT_EQ(runs[0][0].images.sizes(), (at::IntArrayRef{5, 3, 4, 4}));
  EXPECT_EQ(runs[0][0].labels.scalar_type(), at::kLong);
  EXPECT_FALSE(at::equal(runs[0][0].labels, runs[0][7].labels)) << "epochs are reshuffled";
}

TEST(DataLoader, SeekResumesTheSameStream) {
  auto dataset = small_dataset(20);
  LoaderOptions lo;
  Loader a(dataset, sampler_options(20, 4), normalize_only({}), lo);
  std::vector<Batch> first;
  for (int i = 0; i < 9; ++i) first.push_back(a.next());
  Loader b(dataset, sampler_options(20, 4), normalize_only({}), lo);
  b.seek(1, 2);
  for (int i = 7; i < 9; ++i) EXPECT_TRUE(at::equal(b.next().images, first[i].images));
}

TEST(DataLoader, MixedBatchesConcatenateRealThenSynthetic) {
  auto real = small_dataset(10), syn = small_dataset(30);
  LoaderOptions lo;
  MixedLoader mixed(std::make_unique<Loader>(real, sampler_options(10, 2), normalize_only({}), lo),
                    std::make_unique<Loader>(syn, sampler_options(30, 6), normalize_only({}), lo));
  Loader real_alone(real, sampler_options(10, 2), normalize_only({}), lo);
  Loader syn_alone(syn, sampler_options(30, 6), normalize_only({}), lo);
  for (int step = 0; step < 8; ++step) {  // the real loader wraps around its epochs
    const auto b = mixed.next(), r = real_alone.next(), s = syn_alone.next();
    ASSERT_EQ(b.images.size(0), 8);
    EXPECT_TRUE(at::equal(b.images.narrow(0, 0, 2), r.images));
    EXPECT_TRUE(at::equal(b.images.narrow(0, 2, 6), s.images));
    EXPECT_TRUE(at::equal(b.labels, at::cat({r.labels, s.labels})));
  }
  MixedLoader syn_only(nullptr, std::make_unique<Loader>(syn, sampler_options(30, 6), normalize_only({}), lo));
  EXPECT_EQ(syn_only.next().images.size(0), 6);
  EXPECT_THROW(MixedLoader(nullptr, nullptr), ConfigError);
}

TEST(DataLoader, WorkerErrorsReachTheConsumer) {
  auto dataset = small_dataset(8);
  ExampleTransform failing = [](const at::Tensor& image, Rng&) -> at::Tensor {
    throw IoError("decoding failed for test");
  };
  LoaderOptions lo;
  lo.workers = 2;
  Loader loader(dataset, sampler_options(8, 2), failing, lo);
  EXPECT_THROW(loader.next(), IoError);
}

}  // namespace
}  // namespace dinv::data

namespace dinv::data {
namespace {

// torchvision's tensor affine: grid_sample(nearest, zeros, align_corners=False)
// on the grid of its inverse matrix. For a square image of side s the pixel
// matrix m maps to ATen's normalised theta by scaling the translation by 2/s.
at::Tensor reference_warp(const at::Tensor& image, const std::array<double, 6>& m) {
  const double s = static_cast<double>(image.size(0));
  auto theta = at::tensor({m[0], m[1], m[2] * 2 / s, m[3], m[4], m[5] * 2 / s}, at::kFloat).view({1, 2, 3});
  auto input = image.permute({2, 0, 1}).unsqueeze(0).to(at::kFloat);
  auto grid = at::affine_grid_generator(theta, {1, 3, image.size(0), image.size(1)}, false);
  auto out = at::grid_sampler(input, grid, /*nearest*/ 1, /*zeros*/ 0, false);
  return out[0].permute({1, 2, 0}).to(at::kByte);
}

// Pixels differing between two warps (float rounding may move a tie by one pixel).
std::int64_t differing_pixels(const at::Tensor& a, const at::Tensor& b) {
  return (a != b).any(2).sum().item<std::int64_t>();
}

TEST(DataAutoAugment, GeometricOpsMatchGridSampleOnTorchvisionsGrid) {
  const auto image = ramp_image(32, 32);
  const double deg = 180.0 / M_PI;
  // Translate by (tx, ty): input = output - t.
  EXPECT_EQ(differing_pixels(auto_augment_op(image, "TranslateX", 5.9), reference_warp(image, {1, 0, -5, 0, 1, 0})), 0);
  EXPECT_EQ(differing_pixels(auto_augment_op(image, "TranslateY", -3), reference_warp(image, {1, 0, 0, 0, 1, 3})), 0);
  // ShearX about the top-left corner (center [0, 0]): x_in = x + k * (y + 0.5) in pixel
  // indices. k = 0.23 never lands on a rounding tie (k = 0.2 would, and ties
  // are decided by float rounding order, which no two implementations share).
  const double k = 0.23;
  EXPECT_EQ(differing_pixels(auto_augment_op(image, "ShearX", k), reference_warp(image, {1, k, k * 16, 0, 1, 0})), 0);
  EXPECT_EQ(differing_pixels(auto_augment_op(image, "ShearY", -k), reference_warp(image, {1, 0, 0, -k, 1, -k * 16})),
            0);
  // Rotate by +a degrees (counter-clockwise on screen): input = R(-a) applied the torchvision way.
  const double a = 20 / deg;
  EXPECT_EQ(differing_pixels(auto_augment_op(image, "Rotate", 20),
                             reference_warp(image, {std::cos(a), -std::sin(a), 0, std::sin(a), std::cos(a), 0})),
            0);
}

TEST(DataAutoAugment, PixelOpsFollowTorchvisionFormulas) {
  const auto image = ramp_image(8, 8);
  const auto f = image.to(at::kFloat);
  EXPECT_TRUE(at::equal(auto_augment_op(image, "Invert", 0), (255 - image.to(at::kInt)).to(at::kByte)));
  EXPECT_TRUE(at::equal(auto_augment_op(image, "Posterize", 5), at::bitwise_and(image, 0xF8)));
  EXPECT_TRUE(at::equal(auto_augment_op(image, "Solarize", 100.0),
                        at::where(image >= 100, 255 - image.to(at::kInt), image.to(at::kInt)).to(at::kByte)));
  EXPECT_TRUE(at::equal(auto_augment_op(image, "Brightness", 0.5), (f * 1.5f).clamp(0, 255).to(at::kByte)));
  const auto gray = (0.2989f * f.select(2, 0) + 0.587f * f.select(2, 1) + 0.114f * f.select(2, 2))
                        .to(at::kByte)
                        .to(at::kFloat)
                        .unsqueeze(2);
  EXPECT_TRUE(at::equal(auto_augment_op(image, "Color", -0.3), (0.7f * f + 0.3f * gray).clamp(0, 255).to(at::kByte)));
  EXPECT_TRUE(at::equal(auto_augment_op(image, "Contrast", 0.4),
                        (1.4f * f + (1.0f - 1.4f) * gray.mean()).clamp(0, 255).to(at::kByte)));
  // AutoContrast stretches each channel to [0, 255].
  const auto stretched = auto_augment_op(image, "AutoContrast", 0);
  for (int c = 0; c < 3; ++c) {
    EXPECT_EQ(stretched.select(2, c).min().item<std::uint8_t>(), 0);
    EXPECT_EQ(stretched.select(2, c).max().item<std::uint8_t>(), 255);
  }
  // Equalize of an image with 4 equally frequent values: step = 3N/4/255 ...
  auto four = at::tensor({10, 20, 30, 40}, at::kByte).repeat({16}).view({8, 8, 1}).expand({8, 8, 3}).contiguous();
  const auto eq = auto_augment_op(four, "Equalize", 0);
  // hist: 16 each; step = floor(48 / 255) = 0 -> unchanged (torchvision returns the channel as is).
  EXPECT_TRUE(at::equal(eq, four));
  auto big = at::tensor({10, 20, 30, 40}, at::kByte).repeat({256}).view({32, 32, 1}).expand({32, 32, 3}).contiguous();
  // hist 256 each; step = floor(768 / 255) = 3; lut[v] = (cumsum before v + 1) // 3.
  const auto eq2 = auto_augment_op(big, "Equalize", 0);
  EXPECT_EQ(eq2.index({0, 0, 0}).item<std::uint8_t>(), 0);    // 10: (0 + 1) // 3
  EXPECT_EQ(eq2.index({0, 1, 1}).item<std::uint8_t>(), 85);   // 20: (256 + 1) // 3
  EXPECT_EQ(eq2.index({0, 2, 2}).item<std::uint8_t>(), 171);  // 30: (512 + 1) // 3
  EXPECT_EQ(eq2.index({0, 3, 0}).item<std::uint8_t>(), 255);  // 40: (768 + 1) // 3 = 256, clamped
}

}  // namespace
}  // namespace dinv::data
