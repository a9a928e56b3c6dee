// A small in-memory labelled image dataset for classify tests: class c is a
// noisy image whose brightest channel and quadrant depend on c, so that a
// network can learn it but the pixels are not constant.
#pragma once

#include <ATen/ATen.h>

#include "dinv/data/dataset.h"

namespace dinv::test {

class MemoryDataset final : public data::Dataset {
 public:
  MemoryDataset(std::int64_t n, std::int64_t classes, std::int64_t res, std::uint64_t seed) : res_(res) {
    at::manual_seed(seed);
    labels_ = at::randint(0, classes, {n}, at::kLong);
    images_ = at::randint(0, 96, {n, res, res, 3}, at::kLong);
    for (std::int64_t i = 0; i < n; ++i) {
      const std::int64_t c = labels_[i].item<std::int64_t>();
      const std::int64_t half = res / 2;
      images_[i].narrow(0, (c / 3 % 2) * half, half).narrow(1, (c / 6 % 2) * half, half).select(2, c % 3) += 150;
    }
    images_ = images_.clamp(0, 255).to(at::kByte);
    for (std::int64_t c = 0; c < classes; ++c) names_.push_back("class" + std::to_string(c));
  }
  std::int64_t size() const override { return labels_.size(0); }
  data::Example get(std::int64_t i) const override { return {images_[i].clone(), labels_[i].item<std::int64_t>()}; }
  const std::vector<std::string>& class_names() const override { return names_; }
  std::string fingerprint() const override { return "memory:" + std::to_string(size()); }
  std::string describe() const override { return "in-memory test set (" + std::to_string(size()) + " images)"; }

 private:
  std::int64_t res_;
  at::Tensor images_, labels_;
  std::vector<std::string> names_;
};

}  // namespace dinv::test
