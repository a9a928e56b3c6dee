// Distribution metrics of dinv evaluate on sets whose answers are known in
// closed form: a set against itself, a shifted set (FID = |shift|^2), a
// scaled set (FID = |mu|^2 + tr S), planted outliers for precision and
// recall, and nearest neighbours against a brute-force loop.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include "dinv/core/error.h"
#include "dinv/evaluate/metrics.h"

namespace dinv::evaluate {
namespace {

at::Tensor gaussian(std::int64_t n, std::int64_t d, std::uint64_t seed) {
  auto g = at::make_generator<at::CPUGeneratorImpl>(seed);
  return at::randn({n, d}, g, at::kDouble) + 0.5;
}

double covariance_trace(const at::Tensor& x) {
  const auto c = x - x.mean(0);
  return (c * c).sum().item<double>() / static_cast<double>(x.size(0) - 1);
}

TEST(Metrics, ASetAgainstItselfHasFidZeroAndFullPrecisionRecallCoverage) {
  const auto a = gaussian(200, 16, 1);
  EXPECT_NEAR(frechet_distance(a, a), 0.0, 1e-8);
  const auto m = manifold_metrics(a, a, 3);
  EXPECT_EQ(m.precision, 1.0);
  EXPECT_EQ(m.recall, 1.0);
  EXPECT_EQ(m.coverage, 1.0);
  EXPECT_GE(m.density, 1.0 / 3);  // each point is in its own ball at least
}

TEST(Metrics, AShiftIsItsSquaredLength) {
  const auto a = gaussian(300, 8, 2);
  const auto shift = at::arange(8, at::kDouble) / 4;
  const double expected = (shift * shift).sum().item<double>();
  EXPECT_NEAR(frechet_distance(a, a + shift), expected, 1e-9 * expected);
}

TEST(Metrics, ADoubledSetAddsItsMeanAndTrace) {
  // b = 2a: mu_b = 2 mu_a, S_b = 4 S_a, (S_a S_b)^1/2 = 2 S_a:
  // FID = |mu_a|^2 + tr(S_a + 4 S_a - 4 S_a) = |mu_a|^2 + tr S_a.
  const auto a = gaussian(400, 6, 3);
  const double expected = a.mean(0).pow(2).sum().item<double>() + covariance_trace(a);
  EXPECT_NEAR(frechet_distance(a, 2 * a), expected, 1e-9 * expected);
}

TEST(Metrics, FarOutliersCostPrecisionOrRecallExactly) {
  const auto real = gaussian(100, 4, 4);
  const auto outliers = at::full({10, 4}, 1000.0, at::kDouble);
  // 10 generated points far from every real point: precision 100/110.
  auto m = manifold_metrics(real, at::cat({real, outliers}), 3);
  EXPECT_DOUBLE_EQ(m.precision, 100.0 / 110.0);
  EXPECT_EQ(m.recall, 1.0);
  // Real points that nothing generated comes near: recall and coverage 100/110.
  m = manifold_metrics(at::cat({real, outliers + at::arange(10, at::kDouble).unsqueeze(1) * 50}), real, 3);
  EXPECT_DOUBLE_EQ(m.recall, 100.0 / 110.0);
  EXPECT_DOUBLE_EQ(m.coverage, 100.0 / 110.0);
  EXPECT_EQ(m.precision, 1.0);
}

TEST(Metrics, NearestEqualsABruteForceLoop) {
  const auto q = gaussian(30, 5, 5), p = gaussian(50, 5, 6);
  const auto found = nearest(q, p);
  for (std::int64_t i = 0; i < q.size(0); ++i) {
    double best = 1e300;
    std::int64_t at = -1;
    for (std::int64_t j = 0; j < p.size(0); ++j) {
      const double d = (q[i] - p[j]).pow(2).sum().sqrt().item<double>();
      if (d < best) best = d, at = j;
    }
    EXPECT_EQ(found.index[i].item<std::int64_t>(), at);
    EXPECT_NEAR(found.distance[i].item<double>(), best, 1e-9);
  }
  const auto self = nearest(p, p, true);
  EXPECT_TRUE(self.index.ne(at::arange(50)).all().item<bool>());
}

TEST(Metrics, TooFewImagesAreRefused) {
  const auto a = gaussian(3, 4, 7);
  EXPECT_THROW(manifold_metrics(a, a, 3), Error);
  EXPECT_THROW(frechet_distance(a.slice(0, 0, 1), a), Error);
}

}  // namespace
}  // namespace dinv::evaluate
