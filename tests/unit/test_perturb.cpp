// Stage 2's perturbation rule (METHOD.md): partners, interpolation, noise.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include <ATen/ATen.h>

#include "dinv/core/error.h"
#include "dinv/generation/perturb.h"

namespace dinv::generation {
namespace {

TEST(Partners, EnoughSameClassImagesDrawsWithoutReplacementFromTheWholeClass) {
  // Class 0 at positions 0, 2, 4, 6, 8, 10 (six images); source 4.
  const std::vector<std::int64_t> labels{0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 2};
  std::set<std::int64_t> seen;
  for (std::uint64_t seed = 0; seed < 200; ++seed) {
    const auto p = draw_partners(labels, 4, 5, seed);
    ASSERT_EQ(p.size(), 5u);
    EXPECT_EQ(std::set<std::int64_t>(p.begin(), p.end()).size(), 5u) << "drawn with replacement";
    for (auto j : p) {
      EXPECT_EQ(labels[j], 0) << "partner from another class";
      seen.insert(j);
    }
  }
  // The source itself is part of the pool, as in the method's code.
  EXPECT_TRUE(seen.count(4));
  EXPECT_EQ(seen.size(), 6u);
}

TEST(Partners, TooFewSameClassTakesAllThenDistinctOutOfClass) {
  const std::vector<std::int64_t> labels{3, 3, 1, 2, 1, 2, 0};  // source 0: one other class-3 image
  for (std::uint64_t seed = 0; seed < 50; ++seed) {
    const auto p = draw_partners(labels, 0, 4, seed);
    ASSERT_EQ(p.size(), 4u);
    EXPECT_EQ(p[0], 1);  // every other same-class image first
    std::set<std::int64_t> rest(p.begin() + 1, p.end());
    EXPECT_EQ(rest.size(), 3u);
    for (auto j : rest) EXPECT_NE(labels[j], 3);
  }
}

TEST(Partners, DeterministicPerSeedAndTooSmallGroupIsAnError) {
  const std::vector<std::int64_t> labels{0, 0, 0, 0, 0, 0, 0, 0};
  EXPECT_EQ(draw_partners(labels, 2, 5, 9), draw_partners(labels, 2, 5, 9));
  EXPECT_THROW(draw_partners({0, 1}, 0, 5, 1), ConfigError);
}

TEST(Perturb, InterpolationAndNoiseStatistics) {
  const at::Tensor ci = at::zeros({5, 64}), cj = at::ones({5, 64}) * 10;
  EXPECT_TRUE(at::allclose(perturb(ci, cj, 0.1, 0.0, 1), at::ones({5, 64})));
  EXPECT_TRUE(at::equal(perturb(ci, cj, 0.0, 0.0, 1), ci));
  // Noise: N(0, sigma^2) around the interpolated point.
  const at::Tensor big_i = at::zeros({200, 768});
  const at::Tensor c = perturb(big_i, big_i, 0.3, 0.1, 42);
  EXPECT_NEAR(c.mean().item<double>(), 0.0, 0.002);
  EXPECT_NEAR(c.std().item<double>(), 0.1, 0.002);
  EXPECT_TRUE(at::equal(c, perturb(big_i, big_i, 0.3, 0.1, 42)));
  EXPECT_FALSE(at::equal(c, perturb(big_i, big_i, 0.3, 0.1, 43)));
}

}  // namespace
}  // namespace dinv::generation
