#include "dinv/generation/perturb.h"

#include <algorithm>
#include <string>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include "dinv/core/error.h"

namespace dinv::generation {
namespace {

// The first `k` entries of a seeded random permutation of `pool`.
std::vector<std::int64_t> choose(const std::vector<std::int64_t>& pool, std::int64_t k, at::Generator& gen) {
  const at::Tensor order = at::randperm(static_cast<std::int64_t>(pool.size()), gen, at::kLong);
  std::vector<std::int64_t> out;
  for (std::int64_t i = 0; i < k; ++i) out.push_back(pool[static_cast<std::size_t>(order[i].item<std::int64_t>())]);
  return out;
}

}  // namespace

std::vector<std::int64_t> draw_partners(const std::vector<std::int64_t>& labels, std::int64_t source,
                                        std::int64_t count, std::uint64_t seed) {
  const auto n = static_cast<std::int64_t>(labels.size());
  if (source < 0 || source >= n) throw Error("internal: partner source outside its group");
  if (count > n)
    throw ConfigError("generate.num_samples = " + std::to_string(count) + " is more than the " + std::to_string(n) +
                      " images of a group: there are not enough distinct partners");
  std::vector<std::int64_t> same, others_same, different;
  for (std::int64_t j = 0; j < n; ++j) {
    if (labels[j] == labels[source]) {
      same.push_back(j);
      if (j != source) others_same.push_back(j);
    } else {
      different.push_back(j);
    }
  }
  auto gen = at::detail::createCPUGenerator(seed);
  if (static_cast<std::int64_t>(others_same.size()) >= count) return choose(same, count, gen);
  std::vector<std::int64_t> partners = others_same;
  const auto fill = count - static_cast<std::int64_t>(others_same.size());
  if (fill > static_cast<std::int64_t>(different.size()))
    throw ConfigError("generate.num_samples = " + std::to_string(count) + ": the group of " + std::to_string(n) +
                      " images cannot supply that many distinct partners");
  for (auto j : choose(different, fill, gen)) partners.push_back(j);
  return partners;
}

void check_partner_groups(std::int64_t images, std::int64_t group_size, std::int64_t count, const std::string& stage) {
  if (images < 1 || group_size < 1) return;
  const std::int64_t groups = (images + group_size - 1) / group_size;
  const std::int64_t last = images - (groups - 1) * group_size;
  const bool all_too_small = groups > 1 && group_size <= count;
  if (!all_too_small && last > count) return;
  std::string msg = stage + ": generate.num_samples = " + std::to_string(count) + " distinct partners per image need " +
                    "groups of at least " + std::to_string(count + 1) + " images, but ";
  if (all_too_small) {
    msg += "embed.group_size is " + std::to_string(group_size) + ". Choose a larger embed.group_size";
  } else {
    const std::int64_t first = images - last;
    msg += "the last embedding group (images " + std::to_string(first) + ".." + std::to_string(images - 1) + " of " +
           std::to_string(images) + " with embed.group_size = " + std::to_string(group_size) + ") holds only " +
           std::to_string(last) + (last == 1 ? " image" : " images") + ". Embed a multiple of embed.group_size images";
    if (first > 0) msg += " (embed.num_images = " + std::to_string(first) + ")";
    msg += ", choose another embed.group_size";
  }
  msg += ", or lower generate.num_samples";
  if (stage == "embed") msg += " (checked before embedding, so that no work is spent on a store generate would refuse)";
  throw ConfigError(msg);
}

at::Tensor perturb(const at::Tensor& c_i, const at::Tensor& c_j, double interpolation, double noise_scale,
                   std::uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  at::Tensor c = c_i + interpolation * (c_j - c_i);
  if (noise_scale > 0) c = c + noise_scale * at::randn(c_i.sizes(), gen, at::kFloat);
  return c;
}

}  // namespace dinv::generation
