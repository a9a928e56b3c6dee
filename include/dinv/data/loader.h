// Batches for training and evaluation: worker threads decode and transform
// examples ahead of the consumer (prefetch), and the batches come out in the
// sampler's order whatever the number of threads. Each example's random
// transform draws from its own generator, seeded from (seed, epoch, position
// in the epoch's global order), so results do not depend on threads or ranks.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include <ATen/core/Tensor.h>

#include "dinv/data/dataset.h"
#include "dinv/data/rng.h"
#include "dinv/data/sampler.h"
#include "dinv/data/transforms.h"

namespace dinv::data {

// uint8 [H, W, 3] -> float [3, H', W'].
using ExampleTransform = std::function<at::Tensor(const at::Tensor& image, Rng& rng)>;
// transform_example with `options` (needs dinv::io::resize when options.resolution resizes).
ExampleTransform make_example_transform(const TransformOptions& options);
// Only uint8 -> normalised float, no randomness (no resize).
ExampleTransform normalize_only(const MeanStd& norm);

struct Batch {
  at::Tensor images;  // float [B, 3, H, W]
  at::Tensor labels;  // int64 [B]
  std::int64_t epoch = 0, step = 0;
};

struct LoaderOptions {
  int workers = 2;         // 0: build batches in the calling thread
  int prefetch = 4;        // batches built ahead of the consumer
  std::uint64_t seed = 0;  // augmentation streams (the sampler has its own seed)
};

class Loader {
 public:
  Loader(DatasetPtr dataset, const SamplerOptions& sampler, ExampleTransform transform, const LoaderOptions& options);
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  std::int64_t steps_per_epoch() const { return sampler_.steps_per_epoch(); }
  // Where the next batch comes from; seek() to resume from a checkpoint.
  std::int64_t epoch() const { return epoch_; }
  std::int64_t step() const { return step_; }
  void seek(std::int64_t epoch, std::int64_t step);
  // The next batch; at the end of an epoch the next epoch starts (training
  // counts steps, not epochs). `epoch_end` tells when a batch ends one.
  Batch next();
  bool at_epoch_start() const { return step_ == 0; }
  const DistributedSampler& sampler() const { return sampler_; }

 private:
  Batch build(std::int64_t epoch, std::int64_t step) const;
  void start_workers();
  void stop_workers();
  void work();

  DatasetPtr dataset_;
  DistributedSampler sampler_;
  ExampleTransform transform_;
  LoaderOptions options_;
  std::int64_t epoch_ = 0, step_ = 0;

  // Worker state for the current epoch: steps are claimed in order, results
  // keyed by step, the consumer takes them in order.
  std::vector<std::thread> threads_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::int64_t next_claim_ = 0;
  bool stopping_ = false;
  std::map<std::int64_t, Batch> ready_;
  std::map<std::int64_t, std::exception_ptr> failed_;
};

// Real and synthetic batches with separate per-step counts, concatenated each
// step (real first). A null loader contributes nothing (real_bs = 0: synthetic only).
class MixedLoader {
 public:
  MixedLoader(std::unique_ptr<Loader> real, std::unique_ptr<Loader> synthetic);
  Batch next();
  Loader* real() { return real_.get(); }
  Loader* synthetic() { return synthetic_.get(); }

 private:
  std::unique_ptr<Loader> real_, synthetic_;
};

}  // namespace dinv::data
