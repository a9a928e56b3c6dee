#include "dinv/data/sampler.h"

#include <algorithm>
#include <numeric>
#include <string>

#include "dinv/core/error.h"
#include "dinv/data/rng.h"

namespace dinv::data {

DistributedSampler::DistributedSampler(const SamplerOptions& options) : o_(options) {
  if (o_.world_size < 1 || o_.rank < 0 || o_.rank >= o_.world_size)
    throw Error("sampler: rank " + std::to_string(o_.rank) + " is not in a world of " + std::to_string(o_.world_size));
  if (o_.batch_size < 1)
    throw ConfigError("sampler: batch size per rank must be >= 1, found " + std::to_string(o_.batch_size));
  if (o_.dataset_size < 1) throw ConfigError("sampler: the dataset is empty");
  if (o_.drop_last && o_.dataset_size < global_batch())
    passes_ = (global_batch() + o_.dataset_size - 1) / o_.dataset_size;
}

std::int64_t DistributedSampler::steps_per_epoch() const {
  const auto B = global_batch(), n = positions_per_epoch();
  return o_.drop_last ? n / B : (n + B - 1) / B;
}

std::vector<std::int64_t> DistributedSampler::global_order(std::int64_t epoch) const {
  std::lock_guard<std::mutex> lock(mutex_);
  if (epoch == cached_epoch_) return cached_order_;
  std::vector<std::int64_t> order;
  order.reserve(static_cast<std::size_t>(positions_per_epoch()));
  for (std::int64_t pass = 0; pass < passes_; ++pass) {
    std::vector<std::int64_t> one(o_.dataset_size);
    std::iota(one.begin(), one.end(), 0);
    if (o_.shuffle) {  // Fisher-Yates from (seed, epoch * passes + pass)
      const auto draw = static_cast<std::uint64_t>(epoch * passes_ + pass);
      Rng rng(mix_seed({o_.seed, draw, 0x5A3D1E5ull}));
      for (std::int64_t i = o_.dataset_size - 1; i > 0; --i)
        std::swap(one[i], one[rng.below(static_cast<std::uint64_t>(i + 1))]);
    }
    order.insert(order.end(), one.begin(), one.end());
  }
  cached_epoch_ = epoch;
  cached_order_ = order;
  return order;
}

std::vector<std::int64_t> DistributedSampler::positions(std::int64_t step) const {
  if (step < 0 || step >= steps_per_epoch())
    throw Error("sampler: step " + std::to_string(step) + " outside the epoch's " + std::to_string(steps_per_epoch()) +
                " steps");
  const std::int64_t n = positions_per_epoch();
  const std::int64_t begin = std::min(n, step * global_batch() + o_.rank * o_.batch_size);
  const std::int64_t end = std::min(n, begin + o_.batch_size);
  std::vector<std::int64_t> out(end - begin);
  std::iota(out.begin(), out.end(), begin);
  return out;
}

std::vector<std::int64_t> DistributedSampler::indices(std::int64_t epoch, std::int64_t step) const {
  const auto order = global_order(epoch);
  auto out = positions(step);
  for (auto& p : out) p = order[p];
  return out;
}

}  // namespace dinv::data
