// Stage 1's unit trainer on a small differentiable stand-in for the UNet:
// deterministic, resumable bit for bit from its state, learning, and packing
// groups does not change a group's result.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include "dinv/core/error.h"
#include "dinv/inversion/unit_trainer.h"

namespace dinv::inversion {
namespace {

// predict = noisy * 0.01 + per-channel projection of the conditioning's mean
// token: learnable through `cond` only.
FrozenModel stand_in() {
  FrozenModel m;
  m.cond_dim = 8;
  m.latent_channels = 4;
  m.latent_factor = 2;
  m.num_train_timesteps = 1000;
  m.scaling_factor = 0.5;
  static const at::Tensor proj = at::linspace(-1, 1, 8 * 4).reshape({8, 4});
  m.predict = [](const at::Tensor& noisy, const at::Tensor& t, const at::Tensor& cond) {
    const at::Tensor shift = at::matmul(cond.mean(1), proj);  // [B, 4]
    return noisy * 0.01 + shift.unsqueeze(-1).unsqueeze(-1) * (1.0 + t.to(at::kFloat).view({-1, 1, 1, 1}) / 1000.0);
  };
  m.add_noise = [](const at::Tensor& x0, const at::Tensor& noise, const at::Tensor& t) {
    const at::Tensor a = (1.0 - t.to(at::kFloat) / 1000.0).view({-1, 1, 1, 1});
    return a.sqrt() * x0 + (1 - a).sqrt() * noise;
  };
  // Sample prediction: the per-image target is learnable through the shift.
  m.target = [](const at::Tensor& x0, const at::Tensor&, const at::Tensor&) { return x0; };
  return m;
}

EmbedSettings settings() {
  EmbedSettings s;
  s.num_tokens = 3;
  s.group_size = 6;
  s.batch_size = 4;  // batches of 4 and 2: uneven on purpose
  s.steps = 12;
  s.seed = 7;
  return s;
}

Posterior posterior(std::int64_t n) {
  auto gen = at::detail::createCPUGenerator(3);
  return {at::randn({n, 4, 2, 2}, gen), at::rand({n, 4, 2, 2}, gen) * 0.1};
}

TEST(UnitTrainer, PlansGroupsAndPacks) {
  const auto units = plan_units(13, 5, 2);
  ASSERT_EQ(units.size(), 2u);
  EXPECT_EQ(units[0].groups.size(), 2u);
  EXPECT_EQ(units[0].images().end, 10);
  EXPECT_EQ(units[1].groups[0].size(), 3);  // the remainder is a short last group
}

TEST(UnitTrainer, DeterministicAndResumableBitForBit) {
  const auto model = stand_in();
  const auto plan = plan_units(6, 6, 1)[0];
  UnitTrainer a(model, settings(), plan, posterior(6), at::kCPU);
  for (int i = 0; i < 12; ++i) a.step();

  UnitTrainer b(model, settings(), plan, posterior(6), at::kCPU);
  for (int i = 0; i < 5; ++i) b.step();
  const auto saved = b.state();
  UnitTrainer c(model, settings(), plan, posterior(6), at::kCPU);
  c.load_state(saved, "test");
  for (int i = 5; i < 12; ++i) c.step();
  EXPECT_TRUE(at::equal(a.embeddings(), c.embeddings()));
  EXPECT_TRUE(at::equal(a.last_loss(), c.last_loss()));
  EXPECT_EQ(c.steps_done(), 12);
}

TEST(UnitTrainer, LossDecreases) {
  const auto model = stand_in();
  auto s = settings();
  s.steps = 300;
  UnitTrainer t(model, s, plan_units(6, 6, 1)[0], posterior(6), at::kCPU);
  double first = 0, last = 0;
  for (int i = 0; i < 20; ++i) first += t.step();
  for (int i = 20; i < 280; ++i) t.step();
  for (int i = 280; i < 300; ++i) last += t.step();
  EXPECT_LT(last, first * 0.9);
}

TEST(UnitTrainer, CheckpointStateMismatchIsAnError) {
  const auto model = stand_in();
  UnitTrainer t(model, settings(), plan_units(6, 6, 1)[0], posterior(6), at::kCPU);
  auto state = t.state();
  state.erase("exp_avg.0");
  EXPECT_THROW(t.load_state(state, "ckpt.safetensors"), Error);
}

}  // namespace
}  // namespace dinv::inversion
