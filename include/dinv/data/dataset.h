// Labelled image datasets as every stage sees them: random access to uint8
// HWC images and integer labels, with class names and a fingerprint that
// identifies the exact data (stores and result files record it).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

namespace dinv::data {

struct Example {
  at::Tensor image;  // uint8 [H, W, 3]
  std::int64_t label = 0;
};

class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual std::int64_t size() const = 0;
  virtual Example get(std::int64_t index) const = 0;  // thread-safe
  virtual const std::vector<std::string>& class_names() const = 0;
  // Stable identity of the data (format, files, sizes, a content hash).
  virtual std::string fingerprint() const = 0;
  virtual std::string describe() const = 0;  // "CIFAR-10 train (50000 images, 32x32)"
};

using DatasetPtr = std::shared_ptr<const Dataset>;

}  // namespace dinv::data
