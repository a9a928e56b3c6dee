// Distances between sets of image features (rows of [N, D] tensors), computed
// in float64 on the CPU:
//   frechet_distance   the FID formula: |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^1/2),
//                      covariances with N - 1 (numpy's cov), the matrix root
//                      through symmetric eigendecompositions
//   manifold_metrics   precision and recall (Kynkaanniemi et al. 2019) and
//                      density and coverage (Naeem et al. 2020) with k-NN balls
//   nearest            each query's nearest pool row (Euclidean; ties: lowest index)
#pragma once

#include <cstdint>

#include <ATen/core/Tensor.h>

namespace dinv::evaluate {

double frechet_distance(const at::Tensor& a, const at::Tensor& b);

struct ManifoldMetrics {
  double precision = 0, recall = 0, density = 0, coverage = 0;
};
// real [N, D], fake [M, D]; k nearest neighbours (self excluded), k < N and k < M.
ManifoldMetrics manifold_metrics(const at::Tensor& real, const at::Tensor& fake, std::int64_t k);

struct Nearest {
  at::Tensor index;     // int64 [Q]
  at::Tensor distance;  // float64 [Q]
};
// `exclude_self`: queries are the pool itself; a row is not its own neighbour.
Nearest nearest(const at::Tensor& queries, const at::Tensor& pool, bool exclude_self = false);

}  // namespace dinv::evaluate
