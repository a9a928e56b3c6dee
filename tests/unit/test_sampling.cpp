// The guided sampling loop with a closed-form denoiser and decoder:
// batch invariance (a batch of 8 equals 8 batches of 1, bitwise on CPU, for
// every sampler), classifier-free guidance arithmetic, and clear errors for
// bad input.
#include <cmath>
#include <limits>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "dinv/core/error.h"
#include "dinv/diffusion/sampling.h"
#include "dinv/diffusion/scheduler.h"

namespace dd = dinv::diffusion;

namespace {

dd::SchedulerConfig sd15_config() {
  return dd::SchedulerConfig::from_json(
      R"({"_class_name": "PNDMScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear",
          "beta_start": 0.00085, "clip_sample": false, "num_train_timesteps": 1000,
          "set_alpha_to_one": false, "skip_prk_steps": true, "steps_offset": 1})",
      "test");
}

// Elementwise in the sample, per-sample in the conditioning: what a model does
// without mixing samples of a batch.
at::Tensor toy_denoiser(const at::Tensor& x, const at::Tensor& t, const at::Tensor& cond) {
  auto c = cond.mean({1, 2}).view({-1, 1, 1, 1});
  auto tt = t.to(at::kFloat).view({-1, 1, 1, 1}) / 1000;
  return 0.3 * x * at::cos(tt) + at::tanh(c + x * 0.1);
}

at::Tensor toy_decoder(const at::Tensor& z) {
  return at::tanh(at::upsample_nearest2d(z.narrow(1, 0, 3), {z.size(2) * 8, z.size(3) * 8}));
}

dd::SamplingOptions small_options() {
  dd::SamplingOptions o;
  o.steps = 6;
  o.guidance = 2.0;
  o.seed = 42;
  o.height = o.width = 32;
  return o;
}

dd::SamplingResult run(const std::string& sampler, const at::Tensor& cond, const at::Tensor& uncond,
                       const dd::SamplingOptions& o, const at::Tensor& latents = at::Tensor()) {
  dd::SamplerOptions so;
  so.name = sampler;
  so.eta = 1.0;
  auto s = dd::make_scheduler(sd15_config(), so);
  return dd::sample_guided(toy_denoiser, toy_decoder, *s, cond, uncond, o, latents);
}

}  // namespace

class BatchInvariance : public ::testing::TestWithParam<std::string> {};

TEST_P(BatchInvariance, BatchOfEightEqualsEightBatchesOfOne) {
  at::manual_seed(0);
  const auto cond = at::randn({8, 5, 16});
  const auto uncond = cond.mean(0, /*keepdim=*/true);
  const auto o = small_options();
  const auto whole = run(GetParam(), cond, uncond, o);
  ASSERT_EQ(whole.images.sizes(), (std::vector<int64_t>{8, 32, 32, 3}));
  ASSERT_EQ(whole.images.scalar_type(), at::kByte);
  for (int64_t b = 0; b < 8; ++b) {
    auto single_options = o;
    single_options.first_sample_index = b;
    const auto one = run(GetParam(), cond.narrow(0, b, 1), uncond, single_options);
    EXPECT_TRUE(at::equal(one.latents[0], whole.latents[b])) << GetParam() << " sample " << b;
    EXPECT_TRUE(at::equal(one.images[0], whole.images[b])) << GetParam() << " sample " << b;
  }
  // Different samples get different random streams.
  EXPECT_FALSE(at::equal(whole.latents[0], whole.latents[1]));
}

INSTANTIATE_TEST_SUITE_P(AllSamplers, BatchInvariance, ::testing::Values("ddim", "pndm", "dpmpp", "euler", "euler_a"));

TEST(Sampling, GuidanceFormulaAndInitialLatents) {
  // With a denoiser that returns the conditioning mean, the guided output is
  // eps_u + w (eps_c - eps_u); DDIM eta 0 from given latents is deterministic.
  const auto cond = at::full({2, 3, 4}, 1.0), uncond = at::full({1, 3, 4}, 0.25);
  dd::Denoiser probe = [&](const at::Tensor& x, const at::Tensor&, const at::Tensor& c) {
    EXPECT_EQ(x.size(0), 4);
    EXPECT_TRUE(at::allclose(c.narrow(0, 0, 2), uncond.expand({2, 3, 4})));
    auto out = c.mean({1, 2}).view({-1, 1, 1, 1}).expand_as(x).clone();
    return out;
  };
  dd::Denoiser guided_reference = [&](const at::Tensor& x, const at::Tensor&, const at::Tensor&) {
    return at::full_like(x, 0.25 + 3.0 * (1.0 - 0.25));
  };
  auto o = small_options();
  o.guidance = 3.0;
  o.height = o.width = 16;
  const auto latents = at::randn({2, 4, 2, 2});
  auto s1 = dd::make_scheduler(sd15_config(), {"ddim", "folder", 0.0, false});
  auto s2 = dd::make_scheduler(sd15_config(), {"ddim", "folder", 0.0, false});
  const auto a = dd::sample_guided(probe, nullptr, *s1, cond, uncond, o, latents);
  const auto b = dd::sample_guided(guided_reference, nullptr, *s2, cond.narrow(0, 0, 2), uncond, o, latents);
  EXPECT_FALSE(a.images.defined());
  EXPECT_TRUE(at::allclose(a.latents, b.latents, 1e-6, 1e-6));
}

TEST(Sampling, ImagesToUint8RoundsLikeDiffusers) {
  auto x = at::tensor({-1.5f, -1.0f, 0.0f, 1.0f / 255 - 1, 1.0f, 2.0f}).view({1, 3, 1, 2});
  auto u = dd::images_to_uint8(x);
  ASSERT_EQ(u.sizes(), (std::vector<int64_t>{1, 1, 2, 3}));
  // channel-last: pixel 0 = (-1.5, 0, 1) -> (0, 128, 255); pixel 1 = (-1, 1/255-1, 2) -> (0, 0 or 1, 255)
  EXPECT_EQ(u[0][0][0][0].item<uint8_t>(), 0);
  EXPECT_EQ(u[0][0][0][1].item<uint8_t>(), 128);  // 127.5 rounds half to even
  EXPECT_EQ(u[0][0][0][2].item<uint8_t>(), 255);
  EXPECT_EQ(u[0][0][1][2].item<uint8_t>(), 255);
}

template <typename E, typename F>
void expect_error_mentioning(F&& f, const std::string& needle) {
  try {
    f();
    FAIL() << "no error; expected one mentioning " << needle;
  } catch (const E& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(Sampling, BadInputIsAClearError) {
  const auto cond = at::randn({2, 5, 16}), uncond = at::randn({1, 5, 16});
  auto o = small_options();
  auto with = [&](auto change) {
    auto copy = o;
    change(copy);
    return copy;
  };
  expect_error_mentioning<dinv::ConfigError>([&] { run("heun", cond, uncond, o); }, "'heun'");
  expect_error_mentioning<dinv::ConfigError>([&] { run("ddim", cond, uncond, with([](auto& c) { c.steps = 0; })); },
                                             "steps 0");
  expect_error_mentioning<dinv::ConfigError>([&] { run("ddim", cond, uncond, with([](auto& c) { c.steps = 1001; })); },
                                             "1001");
  expect_error_mentioning<dinv::ConfigError>([&] { run("ddim", cond, uncond, with([](auto& c) { c.guidance = -1; })); },
                                             "guidance scale -1");
  expect_error_mentioning<dinv::ConfigError>(
      [&] { run("ddim", cond, uncond, with([](auto& c) { c.guidance = std::nan(""); })); }, "guidance scale nan");
  expect_error_mentioning<dinv::ConfigError>([&] { run("ddim", cond, uncond, with([](auto& c) { c.height = 36; })); },
                                             "height 36");
  expect_error_mentioning<dinv::ModelError>(
      [&] { run("ddim", cond, uncond, with([](auto& c) { c.cross_attention_dim = 768; })); }, "width 16");
  expect_error_mentioning<dinv::Error>([&] { run("ddim", cond, at::randn({1, 5, 8}), o); }, "[1, 5, 8]");
  expect_error_mentioning<dinv::Error>([&] { run("ddim", cond, at::randn({3, 5, 16}), o); }, "batch 3");
  expect_error_mentioning<dinv::Error>([&] { run("ddim", cond, uncond, o, at::randn({3, 4, 4, 4})); }, "[3, 4, 4, 4]");
  expect_error_mentioning<dinv::ConfigError>(
      [&] {
        dd::SamplerOptions so;
        so.name = "ddim";
        so.timestep_spacing = "middle";
        dd::make_scheduler(sd15_config(), so);
      },
      "'middle'");
}

TEST(Sampling, SampleSeedsDifferPerIndexAndSeed) {
  EXPECT_NE(dd::sample_seed(42, 0), dd::sample_seed(42, 1));
  EXPECT_NE(dd::sample_seed(42, 0), dd::sample_seed(43, 0));
  EXPECT_EQ(dd::sample_seed(42, 7), dd::sample_seed(42, 7));
}

TEST(NoiseSchedule, ConfigErrorsNameTheValue) {
  expect_error_mentioning<dinv::ConfigError>(
      [] { dd::SchedulerConfig::from_json(R"({"beta_schedule": "sigmoid"})", "cfg.json"); },
      "cfg.json: beta_schedule 'sigmoid' is not supported by dinv (allowed: linear, scaled_linear, squaredcos_cap_v2)");
  expect_error_mentioning<dinv::ConfigError>(
      [] { dd::SchedulerConfig::from_json(R"({"timestep_spacing": "middle"})", "cfg.json"); },
      "cfg.json: timestep_spacing 'middle' is not supported by dinv (allowed: leading, trailing, linspace)");
  expect_error_mentioning<dinv::ConfigError>(
      [] { dd::SchedulerConfig::from_json(R"({"prediction_type": "flow"})", "cfg.json"); },
      "cfg.json: prediction_type 'flow' is not supported by dinv (allowed: epsilon, v_prediction, sample)");
  expect_error_mentioning<dinv::ConfigError>(
      [] { dd::SchedulerConfig::from_json(R"({"thresholding": true})", "cfg.json"); }, "thresholding");
  expect_error_mentioning<dinv::IoError>([] { dd::SchedulerConfig::from_json("{", "cfg.json"); }, "cfg.json");
  expect_error_mentioning<dinv::ConfigError>(
      [] { dd::make_scheduler(dd::SchedulerConfig::from_json(R"({"_class_name": "LMSDiscreteScheduler"})", "c"), {}); },
      "LMSDiscreteScheduler");
}

TEST(NoiseSchedule, FolderClassPicksTheSampler) {
  EXPECT_EQ(dd::make_scheduler(sd15_config())->name(), "pndm");
  dd::SamplerOptions so;
  so.name = "euler_a";
  EXPECT_EQ(dd::make_scheduler(sd15_config(), so)->name(), "euler_a");
}
