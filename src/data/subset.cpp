#include "dinv/data/subset.h"

#include <algorithm>
#include <map>

#include "dinv/core/config.h"
#include "dinv/core/error.h"
#include "dinv/data/readers.h"
#include "dinv/data/rng.h"

namespace dinv::data {
namespace {

class SubsetDataset : public Dataset {
 public:
  SubsetDataset(DatasetPtr base, std::vector<std::int64_t> indices, const std::string& why)
      : base_(std::move(base)), indices_(std::move(indices)) {
    for (auto i : indices_)
      if (i < 0 || i >= base_->size())
        throw Error("subset of " + base_->describe() + ": index " + std::to_string(i) + " out of range");
    fingerprint_ = base_->fingerprint() + "|subset:" + why + ":" +
                   content_hash(indices_.data(), indices_.size() * sizeof(std::int64_t));
    description_ = base_->describe() + ", subset " + why + " (" + std::to_string(indices_.size()) + " images)";
  }
  std::int64_t size() const override { return static_cast<std::int64_t>(indices_.size()); }
  Example get(std::int64_t index) const override {
    if (index < 0 || index >= size()) throw Error(description_ + ": index " + std::to_string(index) + " out of range");
    return base_->get(indices_[index]);
  }
  const std::vector<std::string>& class_names() const override { return base_->class_names(); }
  std::string fingerprint() const override { return fingerprint_; }
  std::string describe() const override { return description_; }

 private:
  DatasetPtr base_;
  std::vector<std::int64_t> indices_;
  std::string fingerprint_, description_;
};

}  // namespace

std::vector<std::int64_t> subset_indices(std::int64_t dataset_size, std::int64_t num_data, std::int64_t group_size,
                                         std::uint64_t seed) {
  if (group_size < 1) throw ConfigError("subset: group_size must be >= 1, found " + std::to_string(group_size));
  if (num_data < 1 || num_data % group_size != 0)
    throw ConfigError("subset: num_data = " + std::to_string(num_data) +
                      " must be a positive multiple of group_size = " + std::to_string(group_size));
  const std::int64_t groups = dataset_size / group_size, wanted = num_data / group_size;
  if (wanted > groups)
    throw ConfigError("subset: num_data = " + std::to_string(num_data) + " is larger than the dataset's " +
                      std::to_string(groups * group_size) + " images in full groups of " + std::to_string(group_size) +
                      " (" + std::to_string(dataset_size) + " images in all)");
  std::vector<std::int64_t> ids(groups);
  for (std::int64_t g = 0; g < groups; ++g) ids[g] = g;
  Rng rng(mix_seed({seed, 0x5B5E7ull}));
  for (std::int64_t i = 0; i < wanted; ++i)  // partial Fisher-Yates: the first `wanted` are the draw
    std::swap(ids[i], ids[i + static_cast<std::int64_t>(rng.below(static_cast<std::uint64_t>(groups - i)))]);
  ids.resize(wanted);
  std::sort(ids.begin(), ids.end());
  std::vector<std::int64_t> out;
  out.reserve(num_data);
  for (auto g : ids)
    for (std::int64_t k = 0; k < group_size; ++k) out.push_back(g * group_size + k);
  return out;
}

DatasetPtr make_subset(DatasetPtr base, std::vector<std::int64_t> indices, const std::string& why) {
  return std::make_shared<SubsetDataset>(std::move(base), std::move(indices), why);
}

std::vector<std::int64_t> subset_indices(std::int64_t dataset_size, const Config& config) {
  const auto num_data = config.get_int("data.num_data");
  std::vector<std::int64_t> all;
  if (num_data == 0) {
    all.resize(static_cast<std::size_t>(dataset_size));
    for (std::int64_t i = 0; i < dataset_size; ++i) all[static_cast<std::size_t>(i)] = i;
    return all;
  }
  try {
    return subset_indices(dataset_size, num_data, config.get_int("data.group_size"),
                          static_cast<std::uint64_t>(config.get_int("data.subset_seed")));
  } catch (const ConfigError& e) {
    config.reject("data.num_data", e.what());
  }
}

DatasetPtr apply_subset_options(DatasetPtr base, const Config& config) {
  const auto num_data = config.get_int("data.num_data");
  if (num_data == 0 || !base) return base;
  const auto group_size = config.get_int("data.group_size");
  const auto seed = static_cast<std::uint64_t>(config.get_int("data.subset_seed"));
  return make_subset(base, subset_indices(base->size(), config),
                     "num_data=" + std::to_string(num_data) + ",group_size=" + std::to_string(group_size) +
                         ",seed=" + std::to_string(seed));
}

MeanStd mean_std(const std::string& dataset) {
  static const std::map<std::string, MeanStd> table{
      {"cifar10", {{0.4914f, 0.4822f, 0.4465f}, {0.2470f, 0.2435f, 0.2616f}}},
      {"cifar100", {{0.5071f, 0.4866f, 0.4409f}, {0.2673f, 0.2564f, 0.2762f}}},
      {"stl10", {{0.4467f, 0.4398f, 0.4066f}, {0.2603f, 0.2566f, 0.2713f}}},
      {"imagenette", {{0.4608f, 0.4570f, 0.4233f}, {0.2838f, 0.2789f, 0.3012f}}},
      {"imagenet", {{0.485f, 0.456f, 0.406f}, {0.229f, 0.224f, 0.225f}}},
      {"medmnist", {}},
      {"shapes", {}},
  };
  const auto it = table.find(dataset);
  if (it == table.end())
    throw ConfigError("no mean/std for dataset '" + dataset +
                      "', expected one of: cifar10, cifar100, stl10, imagenette, imagenet, medmnist, shapes");
  return it->second;
}

}  // namespace dinv::data
