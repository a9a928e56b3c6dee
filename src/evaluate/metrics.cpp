#include "dinv/evaluate/metrics.h"

#include <ATen/ATen.h>

#include "dinv/core/error.h"

namespace dinv::evaluate {
namespace {

at::Tensor as_double(const at::Tensor& x, const char* what) {
  if (x.dim() != 2 || x.size(0) < 2)
    throw Error(std::string("metrics: ") + what + " must be [N, D] with N >= 2, found " + c10::str(x.sizes()));
  return x.to(at::kDouble).contiguous();
}

// Squared Euclidean distances [A, B], clamped at 0 (cancellation).
at::Tensor squared_distances(const at::Tensor& a, const at::Tensor& b) {
  const auto aa = (a * a).sum(1, true), bb = (b * b).sum(1, true).t();
  return (aa + bb - 2 * a.mm(b.t())).clamp_min(0);
}

// Square root of a symmetric positive semi-definite matrix.
at::Tensor psd_sqrt(const at::Tensor& s) {
  auto [values, vectors] = at::linalg_eigh(s);
  return (vectors * values.clamp_min(0).sqrt().unsqueeze(0)).mm(vectors.t());
}

// Each row's distance to its k-th nearest other row (the radius of its k-NN ball).
at::Tensor knn_radius(const at::Tensor& x, std::int64_t k) {
  auto d = squared_distances(x, x);
  d.fill_diagonal_(std::numeric_limits<double>::infinity());
  return std::get<0>(d.kthvalue(k, 1)).sqrt();
}

}  // namespace

double frechet_distance(const at::Tensor& a_in, const at::Tensor& b_in) {
  const auto a = as_double(a_in, "the first set"), b = as_double(b_in, "the second set");
  if (a.size(1) != b.size(1))
    throw Error("metrics: feature widths differ (" + std::to_string(a.size(1)) + " and " + std::to_string(b.size(1)) +
                ")");
  const auto mu_a = a.mean(0), mu_b = b.mean(0);
  const auto ca = a - mu_a, cb = b - mu_b;
  const auto sa = ca.t().mm(ca) / static_cast<double>(a.size(0) - 1);
  const auto sb = cb.t().mm(cb) / static_cast<double>(b.size(0) - 1);
  // tr((S_a S_b)^1/2) = tr((S_a^1/2 S_b S_a^1/2)^1/2): the inner matrix is symmetric PSD.
  const auto root_a = psd_sqrt(sa);
  auto inner = root_a.mm(sb).mm(root_a);
  inner = (inner + inner.t()) / 2;
  const double cross = at::linalg_eigvalsh(inner).clamp_min(0).sqrt().sum().item<double>();
  const double mean_term = (mu_a - mu_b).pow(2).sum().item<double>();
  return mean_term + sa.trace().item<double>() + sb.trace().item<double>() - 2 * cross;
}

ManifoldMetrics manifold_metrics(const at::Tensor& real_in, const at::Tensor& fake_in, std::int64_t k) {
  const auto real = as_double(real_in, "the real set"), fake = as_double(fake_in, "the generated set");
  if (k < 1 || k >= real.size(0) || k >= fake.size(0))
    throw Error("metrics: k = " + std::to_string(k) + " needs more than k images in both sets (" +
                std::to_string(real.size(0)) + " real, " + std::to_string(fake.size(0)) + " generated)");
  const auto real_radius = knn_radius(real, k), fake_radius = knn_radius(fake, k);
  const auto d = squared_distances(real, fake).sqrt();           // [N, M]
  const auto fake_in_real_ball = d <= real_radius.unsqueeze(1);  // [N, M]: fake j inside real i's ball
  const auto real_in_fake_ball = d <= fake_radius.unsqueeze(0);  // real i inside fake j's ball
  ManifoldMetrics m;
  m.precision = fake_in_real_ball.any(0).to(at::kDouble).mean().item<double>();
  m.recall = real_in_fake_ball.any(1).to(at::kDouble).mean().item<double>();
  m.density = fake_in_real_ball.to(at::kDouble).sum(0).mean().item<double>() / static_cast<double>(k);
  m.coverage = fake_in_real_ball.any(1).to(at::kDouble).mean().item<double>();
  return m;
}

Nearest nearest(const at::Tensor& queries, const at::Tensor& pool, bool exclude_self) {
  const auto q = queries.to(at::kDouble).contiguous(), p = pool.to(at::kDouble).contiguous();
  auto d = squared_distances(q, p);
  if (exclude_self) d.fill_diagonal_(std::numeric_limits<double>::infinity());
  // min() returns the first minimum on CPU: ties go to the lowest index.
  auto [distance, index] = d.min(1);
  return {index, distance.sqrt()};
}

}  // namespace dinv::evaluate
