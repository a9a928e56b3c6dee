// Where the trainer's images come from. The trainer asks for this rank's part
// of global step `step` (so that a resumed run continues the same stream) and
// walks this rank's shard of the test set for evaluation.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include <ATen/core/Tensor.h>

#include "dinv/data/dataset.h"

namespace dinv::data {
struct TrainingData;
}

namespace dinv::classify {

struct TrainBatch {
  at::Tensor images;            // float [b, 3, H, W]
  at::Tensor labels, labels_b;  // int64 [b]; labels_b defined when mixed (MixUp / CutMix)
  double lambda = 1.0;          // loss = lambda * CE(labels) + (1 - lambda) * CE(labels_b)
};

class BatchSource {
 public:
  virtual ~BatchSource() = default;
  virtual TrainBatch train_batch(std::int64_t step) = 0;
  using EvalFn = std::function<void(const at::Tensor& images, const at::Tensor& labels)>;
  virtual void for_each_eval_batch(const EvalFn& fn) = 0;
};

// Plain datasets of images at the model's resolution: global batch `step` is a
// slice of per-epoch permutations seeded from (seed, epoch); this rank takes
// positions [rank*b, (rank+1)*b); optional random crop (padding res/8) and
// flip drawn per (seed, step, index). Tests and tools use it.
struct DatasetBatchOptions {
  std::int64_t global_batch = 128, eval_batch = 256;
  std::int64_t resolution = 32;
  std::uint64_t seed = 0;
  bool augment = false;
  std::array<double, 3> mean{0.5, 0.5, 0.5}, std{0.5, 0.5, 0.5};
};
std::unique_ptr<BatchSource> make_dataset_batches(data::DatasetPtr train, data::DatasetPtr test,
                                                  const DatasetBatchOptions& options, int rank, int world_size);

// The data module's loaders (real + synthetic mixed batches, the method's
// transforms, MixUp / CutMix): what `dinv train` uses.
std::unique_ptr<BatchSource> make_loader_batches(std::shared_ptr<data::TrainingData> data, std::uint64_t seed);

// Global batch `step` of a stream of per-epoch permutations of [0, dataset_size)
// seeded from (seed, epoch): positions [begin, end) of that batch.
std::vector<std::int64_t> batch_indices(std::int64_t dataset_size, std::uint64_t seed, std::int64_t global_batch,
                                        std::int64_t step, std::int64_t begin, std::int64_t end);

}  // namespace dinv::classify
