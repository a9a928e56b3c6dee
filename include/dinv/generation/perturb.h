// The method's perturbation of learned conditioning (docs/method.md, stage 2):
// partners drawn from the source image's group, interpolation towards the
// partner, Gaussian noise, and the group's mean embedding as the
// unconditional branch. Every draw comes from a generator seeded from
// (run seed, source image, ...) so that no result depends on rank count,
// chunking or batch size.
#pragma once

#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>

namespace dinv::generation {

// Partners of image `source` (an index within its group) given the labels of
// the group: `count` draws. If the group holds at least `count` other images of
// the source's class, `count` are drawn without replacement from all images of
// that class in the group (the source included, as the method's code does);
// otherwise every other same-class image is taken and the rest are distinct
// out-of-class images. Returns indices within the group.
std::vector<std::int64_t> draw_partners(const std::vector<std::int64_t>& group_labels, std::int64_t source,
                                        std::int64_t count, std::uint64_t seed);

// c = c_i + s (c_j - c_i) + noise_scale * N(0, I), noise drawn from `seed`.
at::Tensor perturb(const at::Tensor& c_i, const at::Tensor& c_j, double interpolation, double noise_scale,
                   std::uint64_t seed);

}  // namespace dinv::generation
