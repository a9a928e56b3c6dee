// Subsets as the method uses them, and the per-dataset normalisation table.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "dinv/data/dataset.h"

namespace dinv {
class Config;
}

namespace dinv::data {

// `num_data` images as random groups of `group_size`. A group is a run of
// consecutive dataset indices: group g = [g*group_size, (g+1)*group_size)
// (the same grouping as the embedding stage's num_emb groups; a short last
// group is never chosen). num_data / group_size distinct groups are drawn
// uniformly without replacement from (seed) and returned in ascending group
// order, each group's indices ascending. num_data must be a positive multiple
// of group_size and at most the number of images in full groups.
std::vector<std::int64_t> subset_indices(std::int64_t dataset_size, std::int64_t num_data, std::int64_t group_size,
                                         std::uint64_t seed);

// A view of `base` at `indices` (labels and class names of the base).
DatasetPtr make_subset(DatasetPtr base, std::vector<std::int64_t> indices, const std::string& why);
// The dataset indices data.num_data / data.group_size / data.subset_seed
// choose from a dataset of `dataset_size` images (num_data 0: all, ascending).
std::vector<std::int64_t> subset_indices(std::int64_t dataset_size, const Config& config);
// data.num_data / data.group_size / data.subset_seed applied (num_data 0: the whole dataset).
DatasetPtr apply_subset_options(DatasetPtr base, const Config& config);

struct MeanStd {
  std::array<float, 3> mean{0.5f, 0.5f, 0.5f}, std{0.5f, 0.5f, 0.5f};
};
// The method's table (docs/method.md): cifar10, cifar100, stl10, imagenette, imagenet, medmnist;
// shapes (the procedural set) uses 0.5 / 0.5 like MedMNIST. Unknown names are a ConfigError.
MeanStd mean_std(const std::string& dataset);

}  // namespace dinv::data
