// The method's perturbation of learned conditioning (docs/method.md, stage 2):
// partners drawn from the source image's group, interpolation towards the
// partner, Gaussian noise, and the group's mean embedding as the
// unconditional branch. Every draw comes from a generator seeded from
// (run seed, source image, ...) so that no result depends on rank count,
// chunking or batch size.
#pragma once

#include <cstdint>
#include <string>
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

// Every image needs `count` distinct partners from its own group (the group
// is the embedding table the partner's embedding was learned in), so every
// group needs at least count + 1 images. Only the last group can be smaller
// than embed.group_size (when the image count is not a multiple of it); the
// method's fill-up rule above cannot help there, because the group simply has
// too few other images. ConfigError naming the group, its size and the keys
// involved when a group of `images` images cut into groups of `group_size` is
// too small; `stage` ("embed" or "generate") says where the check runs: embed
// refuses before any work is done.
void check_partner_groups(std::int64_t images, std::int64_t group_size, std::int64_t count, const std::string& stage);

// c = c_i + s (c_j - c_i) + noise_scale * N(0, I), noise drawn from `seed`.
at::Tensor perturb(const at::Tensor& c_i, const at::Tensor& c_j, double interpolation, double noise_scale,
                   std::uint64_t seed);

}  // namespace dinv::generation
