// The learning-rate schedule of METHOD.md and the optimiser factory.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <torch/optim/optimizer.h>

#include "dinv/classify/optim.h"
#include "dinv/core/error.h"

using namespace dinv::classify;

TEST(ClassifyOptim, WarmupStartsAtOneThousandthAndCosineEndsThere) {
  EXPECT_NEAR(lr_factor(0, 50000, 1000), 0.001, 1e-9);
  EXPECT_NEAR(lr_factor(500, 50000, 1000), (0.001 + 0.999 * 0.5) * lr_factor(500, 50000, 0), 1e-9);
  EXPECT_NEAR(lr_factor(1000, 50000, 0), 0.001 + 0.999 * 0.5 * (1 + std::cos(M_PI * 0.02)), 1e-9);
  EXPECT_NEAR(lr_factor(25000, 50000, 1000), 0.001 + 0.999 * 0.5, 1e-9);
  EXPECT_NEAR(lr_factor(50000, 50000, 1000), 0.001, 1e-9);
  EXPECT_NEAR(lr_factor(0, 100, 0), 1.0, 1e-12);
}

TEST(ClassifyOptim, FactoryMakesSgdAndAdamWAndSetsTheRate) {
  at::Tensor w = at::ones({3}).requires_grad_(true);
  for (const char* name : {"sgd", "adamw"}) {
    OptimizerOptions o;
    o.name = name;
    auto opt = make_optimizer({w}, o);
    set_learning_rate(*opt, 0.25);
    EXPECT_DOUBLE_EQ(opt->param_groups()[0].options().get_lr(), 0.25);
  }
  OptimizerOptions bad;
  bad.name = "lamb";
  EXPECT_THROW(make_optimizer({w}, bad), dinv::ConfigError);
}
