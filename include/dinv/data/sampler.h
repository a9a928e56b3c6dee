// Distributed sampling (docs/architecture.md, "Same bytes on any rank count").
//
// Epoch e visits the dataset in one global order: a permutation of [0, n)
// drawn from (seed, e) (identity without shuffling). Step s covers positions
// [s*B, (s+1)*B) of that order, B = batch_size * world_size; rank r takes the
// fixed slice [s*B + r*b, s*B + (r+1)*b). So 1 rank with batch k*b sees
// exactly the union of what k ranks with batch b see, step by step, and the
// shards of one step are disjoint. A short last step (drop_last = false) is cut
// the same way: the ranks at its end may get fewer or no examples.
//
// A dataset smaller than one global batch (drop_last, n < B: 20 real images
// in batches of 32) is visited k = ceil(B / n) times per epoch, each pass in
// its own order (that of epoch e*k + j, j < k), so the epoch's order has k*n
// positions and at least one full step. A dataset of at least one batch has
// k = 1: the orders above.
#pragma once

#include <cstdint>
#include <mutex>
#include <vector>

namespace dinv::data {

struct SamplerOptions {
  std::int64_t dataset_size = 0;
  std::int64_t batch_size = 1;  // per rank
  int rank = 0;
  int world_size = 1;
  std::uint64_t seed = 0;
  bool shuffle = true;
  bool drop_last = true;
};

class DistributedSampler {
 public:
  explicit DistributedSampler(const SamplerOptions& options);
  const SamplerOptions& options() const { return o_; }
  std::int64_t global_batch() const { return o_.batch_size * o_.world_size; }
  std::int64_t steps_per_epoch() const;
  // Passes over the dataset per epoch: 1, or k for a dataset smaller than one batch.
  std::int64_t passes_per_epoch() const { return passes_; }
  std::int64_t positions_per_epoch() const { return passes_ * o_.dataset_size; }
  // The epoch's global order of dataset indices (the same on every rank).
  std::vector<std::int64_t> global_order(std::int64_t epoch) const;
  // This rank's positions in the global order at `step` (positions identify an
  // example within the epoch independently of the rank count: augmentation
  // streams are seeded from them).
  std::vector<std::int64_t> positions(std::int64_t step) const;
  // This rank's dataset indices at (epoch, step).
  std::vector<std::int64_t> indices(std::int64_t epoch, std::int64_t step) const;

 private:
  SamplerOptions o_;
  std::int64_t passes_ = 1;
  mutable std::mutex mutex_;
  mutable std::int64_t cached_epoch_ = -1;
  mutable std::vector<std::int64_t> cached_order_;
};

}  // namespace dinv::data
