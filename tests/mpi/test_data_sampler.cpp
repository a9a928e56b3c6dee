// The distributed sampler and loader under 1, 2 and 4 ranks: disjoint shards
// per step, and the ranks' shards together are exactly what one rank with
// the global batch sees (indices, transformed images and labels).
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <algorithm>
#include <set>

#include "dinv/data/loader.h"
#include "dinv/data/readers.h"
#include "dinv/dist/communicator.h"
#include "mpi_env.h"

namespace dinv {
namespace {

using data::SamplerOptions;

SamplerOptions options(std::int64_t n, std::int64_t b, int rank, int size, bool drop_last = true) {
  SamplerOptions o;
  o.dataset_size = n;
  o.batch_size = b;
  o.rank = rank;
  o.world_size = size;
  o.seed = 11;
  o.drop_last = drop_last;
  return o;
}

TEST(DataSampler, RankShardsAreDisjointAndUnionIsTheSingleRankBatch) {
  auto& w = test::world();
  auto comm = dist::make_mpi_communicator(w);
  const std::int64_t n = 103, b = 4;
  for (bool drop_last : {true, false}) {
    data::DistributedSampler mine(options(n, b, w.rank(), w.size(), drop_last));
    data::DistributedSampler single(options(n, b * w.size(), 0, 1, drop_last));
    ASSERT_EQ(mine.steps_per_epoch(), single.steps_per_epoch());
    for (std::int64_t epoch : {0, 1}) {
      std::set<std::int64_t> seen;
      for (std::int64_t step = 0; step < mine.steps_per_epoch(); ++step) {
        auto indices = mine.indices(epoch, step);
        // Gather every rank's slice (padded with -1 to b) on every rank.
        std::vector<std::int64_t> padded(b, -1);
        std::copy(indices.begin(), indices.end(), padded.begin());
        auto all = comm->all_gather(at::tensor(padded, at::kLong));
        std::vector<std::int64_t> gathered;
        for (std::int64_t i = 0; i < all.numel(); ++i)
          if (all.data_ptr<std::int64_t>()[i] >= 0) gathered.push_back(all.data_ptr<std::int64_t>()[i]);
        EXPECT_EQ(gathered, single.indices(epoch, step)) << "epoch " << epoch << " step " << step;
        for (auto i : gathered) EXPECT_TRUE(seen.insert(i).second) << "index " << i << " seen twice in epoch " << epoch;
      }
      EXPECT_EQ(static_cast<std::int64_t>(seen.size()), drop_last ? n / (b * w.size()) * b * w.size() : n);
    }
    EXPECT_NE(mine.global_order(0), mine.global_order(1)) << "reshuffled per epoch";
    EXPECT_EQ(mine.global_order(3), single.global_order(3)) << "same global order on any rank count";
  }
}

TEST(DataSampler, ADatasetSmallerThanOneBatchIsVisitedSeveralTimesPerEpoch) {
  auto& w = test::world();
  auto comm = dist::make_mpi_communicator(w);
  const std::int64_t n = 3, b = 4;  // global batch 4 x ranks > 3 examples
  data::DistributedSampler mine(options(n, b, w.rank(), w.size()));
  data::DistributedSampler single(options(n, b * w.size(), 0, 1));
  const std::int64_t B = b * w.size(), passes = (B + n - 1) / n;
  ASSERT_EQ(mine.passes_per_epoch(), passes);
  ASSERT_EQ(mine.steps_per_epoch(), passes * n / B);
  ASSERT_GE(mine.steps_per_epoch(), 1);
  for (std::int64_t epoch : {0, 1}) {
    const auto order = mine.global_order(epoch);
    ASSERT_EQ(static_cast<std::int64_t>(order.size()), passes * n);
    for (std::int64_t pass = 0; pass < passes; ++pass) {  // each pass visits every example once
      std::vector<std::int64_t> one(order.begin() + pass * n, order.begin() + (pass + 1) * n);
      std::sort(one.begin(), one.end());
      EXPECT_EQ(one, (std::vector<std::int64_t>{0, 1, 2})) << "epoch " << epoch << " pass " << pass;
    }
    for (std::int64_t step = 0; step < mine.steps_per_epoch(); ++step) {
      auto indices = mine.indices(epoch, step);
      ASSERT_EQ(static_cast<std::int64_t>(indices.size()), b);
      auto all = comm->all_gather(at::tensor(indices, at::kLong));
      std::vector<std::int64_t> gathered(all.data_ptr<std::int64_t>(), all.data_ptr<std::int64_t>() + all.numel());
      EXPECT_EQ(gathered, single.indices(epoch, step)) << "epoch " << epoch << " step " << step;
    }
  }
  // A dataset of at least one batch keeps the one-pass orders.
  data::DistributedSampler big(options(2 * B, b, w.rank(), w.size()));
  EXPECT_EQ(big.passes_per_epoch(), 1);
  EXPECT_EQ(big.global_order(1).size(), static_cast<std::size_t>(2 * B));
}

TEST(DataSampler, LoaderBatchesOfAllRanksEqualTheSingleRankBatch) {
  auto& w = test::world();
  auto comm = dist::make_mpi_communicator(w);
  const std::int64_t n = 40, b = 2;
  auto images = at::arange(n * 6 * 6 * 3, at::kLong).remainder(251).to(at::kByte).view({n, 6, 6, 3});
  auto labels = at::arange(n, at::kLong).remainder(5);
  data::DatasetPtr dataset = std::make_shared<data::TensorDataset>(
      images, labels, std::vector<std::string>{"a", "b", "c", "d", "e"}, "test", "test");
  // A random transform: crop with padding and flip, seeded per example.
  data::ExampleTransform transform = [](const at::Tensor& image, data::Rng& rng) {
    return data::to_normalized_chw(data::random_horizontal_flip(data::random_crop(image, 6, 1, rng), rng), {});
  };
  data::LoaderOptions lo;
  lo.workers = 2;
  data::Loader mine(dataset, options(n, b, w.rank(), w.size()), transform, lo);
  lo.workers = 1;
  data::Loader single(dataset, options(n, b * w.size(), 0, 1), transform, lo);
  for (int step = 0; step < 2 * mine.steps_per_epoch() + 1; ++step) {
    auto batch = mine.next();
    auto expected = single.next();
    auto all_images = comm->all_gather(batch.images.contiguous());
    auto all_labels = comm->all_gather(batch.labels);
    EXPECT_TRUE(at::equal(all_images.view(expected.images.sizes()), expected.images)) << "step " << step;
    EXPECT_TRUE(at::equal(all_labels.view({-1}), expected.labels)) << "step " << step;
  }
}

}  // namespace
}  // namespace dinv
