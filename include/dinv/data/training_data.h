// The data side of one training run, from configuration: the real dataset
// (subset applied), the synthetic one, the test set, and their loaders with
// the method's transforms. Keys (all under [data], see `dinv train --help`):
//   resolution, augment, normalize, real_bs, syn_bs, eval_bs, workers,
//   prefetch, mix, mix_alpha; datasets: data.* and syn.* (readers.h).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "dinv/data/loader.h"
#include "dinv/data/readers.h"

namespace dinv {
class Config;
}

namespace dinv::data {

struct TrainingData {
  DatasetPtr real;       // null when data.real_bs = 0
  DatasetPtr synthetic;  // null when data.syn_bs = 0
  DatasetPtr test;       // the real dataset's test split
  std::unique_ptr<MixedLoader> train;
  std::unique_ptr<Loader> eval;  // this rank's shard of the test set, in order, nothing dropped
  std::string mix = "none";      // batch-level mixing the trainer applies: none, mixup, cutmix
  double mix_alpha = 1.0;
  std::int64_t num_classes = 0;
  // What the run trains on, for its results file: the real subset's dataset
  // indices (empty when no real dataset was opened) and the store samples.
  std::vector<std::int64_t> real_indices;
  std::string real_fingerprint;  // the real dataset's fingerprint and the indices, hashed
  bool follow_real = false;
  std::int64_t per_source = 0, total = 0;
  StoreSamples store_samples;  // empty unless syn.format = store
};

// The transform options for the real dataset's format (train or eval).
TransformOptions transform_options(const Config& config, bool train);
// Build everything for this rank (rank, world_size of the data-parallel run).
// Seeds derive from run.seed. Class names of real, synthetic and test data must agree.
TrainingData make_training_data(const Config& config, int rank, int world_size);

}  // namespace dinv::data
