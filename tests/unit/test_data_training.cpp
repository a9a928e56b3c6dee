// The data side of a training run from configuration keys, on the shapes dataset.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <cstdio>
#include <filesystem>
#include <set>

#include "dinv/cli/command.h"
#include "dinv/core/config.h"
#include "dinv/core/error.h"
#include "dinv/data/shapes.h"
#include "dinv/data/training_data.h"
#include "dinv/io/resize.h"

namespace fs = std::filesystem;

namespace dinv::data {
namespace {

class DataTraining : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = fs::temp_directory_path() / ("dinv_data_training_" + std::to_string(::getpid()));
    ShapesOptions o;
    o.train = 60;
    o.test = 30;
    write_shapes(dir_.string(), o);
  }
  // Not fs::remove_all: the copy libtorch.so exports crashes (null call) in this build.
  static void TearDownTestSuite() {
    for (const auto& entry : fs::directory_iterator(dir_)) std::remove(entry.path().c_str());
    std::remove(dir_.c_str());
  }
  static Config config(std::vector<std::string> overrides) {
    overrides.push_back("--data.root=" + dir_.string());
    return Config::resolve(cli::schema(), {}, overrides);
  }
  static fs::path dir_;
};
fs::path DataTraining::dir_;

TEST_F(DataTraining, RealSyntheticAndEvalLoadersFromKeys) {
  auto c = config({"--data.real_bs=8", "--data.syn_bs=4", "--syn.format=cifar10", "--syn.root=" + dir_.string(),
                   "--data.resolution=40", "--data.augment=autoaugment", "--data.eval_bs=8", "--data.workers=2"});
  auto d = make_training_data(c, 0, 2);  // rank 0 of 2: 4 real + 2 synthetic per step
  EXPECT_EQ(d.num_classes, 10);
  for (int step = 0; step < 20; ++step) {
    const auto batch = d.train->next();
    ASSERT_EQ(batch.images.sizes(), (at::IntArrayRef{6, 3, 40, 40}));
    ASSERT_EQ(batch.labels.scalar_type(), at::kLong);
  }
  // Evaluation: this rank's shard, every step in order, nothing dropped (30 = 8 + 8 + 8 + 6).
  EXPECT_EQ(d.eval->steps_per_epoch(), 4);
  std::int64_t seen = 0;
  for (int step = 0; step < 4; ++step) seen += d.eval->next().labels.size(0);
  EXPECT_EQ(seen, 4 + 4 + 4 + 4);  // rank 0 takes the first 4 of every global batch of 8
}

TEST_F(DataTraining, EvalTransformIsResizeCenterCropNormalise) {
  auto c = config({"--data.resolution=24"});
  const auto options = transform_options(c, false);
  EXPECT_FLOAT_EQ(options.norm.mean[0], 0.4914f);  // data.format cifar10 -> CIFAR-10 statistics
  auto image = at::arange(48 * 40 * 3, at::kLong).remainder(253).to(at::kByte).view({48, 40, 3});
  Rng rng(0);
  const auto out = transform_example(image, options, rng);
  // Shorter side 40 -> 24, longer int(24 * 48 / 40) = 28; centre crop rows 2..25.
  const auto expected =
      to_normalized_chw(io::resize(image, 28, 24, io::ResizeFilter::bicubic).narrow(0, 2, 24), options.norm);
  EXPECT_TRUE(at::equal(out, expected));
}

TEST_F(DataTraining, SubsetAndBadKeys) {
  auto d = make_training_data(config({"--data.num_data=20", "--data.group_size=10", "--data.real_bs=4"}), 0, 1);
  EXPECT_EQ(d.real->size(), 20);
  EXPECT_THROW(make_training_data(config({"--data.real_bs=6"}), 0, 4), ConfigError);  // 6 over 4 ranks
  EXPECT_THROW(make_training_data(config({"--data.num_data=100", "--data.group_size=10"}), 0, 1), ConfigError);
  EXPECT_THROW(make_training_data(config({"--data.real_bs=0"}), 0, 1), ConfigError);  // nothing to train on
  EXPECT_THROW(make_training_data(config({"--data.syn_bs=4"}), 0, 1), ConfigError);   // syn.format none
}

}  // namespace
}  // namespace dinv::data
