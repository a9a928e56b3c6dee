// DDIM (Song et al. 2021), as diffusers' DDIMScheduler: deterministic for
// eta = 0, with a DDPM-like noise term of std eta * sigma_t otherwise.
#include <cmath>

#include <ATen/ATen.h>

#include "dinv/core/error.h"
#include "scheduler_impl.h"

namespace dinv::diffusion::detail {

namespace {

class DdimScheduler : public Scheduler {
 public:
  DdimScheduler(const SchedulerConfig& config, double eta)
      : Scheduler(config),
        eta_(eta),
        spacing_(config.timestep_spacing.value_or(TimestepSpacing::leading)),
        clip_sample_(config.clip_sample.value_or(true)) {
    const auto abar = schedule().alphas_cumprod();
    // The alpha_bar "before" the first training step: 1 or abar[0].
    final_alpha_cumprod_ = config.set_alpha_to_one.value_or(true) ? 1.0f : abar[0].item<float>();
    abar_ = std::vector<float>(abar.data_ptr<float>(), abar.data_ptr<float>() + abar.numel());
  }

  std::string name() const override { return "ddim"; }

  void set_timesteps(std::int64_t n) override {
    check_num_steps(n);
    const auto train = schedule().num_train_timesteps();
    timesteps_ = spaced_timesteps(spacing_, n, train, config().steps_offset, /*round_linspace=*/true);
    step_ratio_ = train / n;
  }

  at::Tensor timesteps() const override { return to_long_tensor(timesteps_); }

  bool needs_noise(std::int64_t) const override { return eta_ > 0; }

  at::Tensor step(const at::Tensor& model_output, std::int64_t i, const at::Tensor& sample,
                  const at::Tensor& noise) override {
    check_step(i, model_output, sample, noise);
    const auto t = static_cast<std::int64_t>(timesteps_[i]);
    const std::int64_t prev_t = t - step_ratio_;  // diffusers' rule, whatever the spacing
    const float abar_t = abar_.at(t);
    const float abar_prev = prev_t >= 0 ? abar_.at(prev_t) : final_alpha_cumprod_;
    const float beta_t = 1 - abar_t;

    auto [x0, eps] = predict_x0_and_eps(model_output, sample, abar_t, beta_t);
    if (clip_sample_) x0 = x0.clamp(-config().clip_sample_range, config().clip_sample_range);

    // sigma_t of the DDIM paper, eq. (16), scaled by eta.
    const float variance = ((1 - abar_prev) / beta_t) * (1 - abar_t / abar_prev);
    const float std_dev = static_cast<float>(eta_) * std::pow(variance, 0.5f);
    auto prev = std::pow(abar_prev, 0.5f) * x0 + std::pow(1 - abar_prev - std_dev * std_dev, 0.5f) * eps;
    if (eta_ > 0) prev = prev + std_dev * noise;
    return prev;
  }

 private:
  std::pair<at::Tensor, at::Tensor> predict_x0_and_eps(const at::Tensor& out, const at::Tensor& x, float abar_t,
                                                       float beta_t) const {
    const float a = std::pow(abar_t, 0.5f), b = std::pow(beta_t, 0.5f);
    switch (schedule().prediction_type()) {
      case PredictionType::epsilon:
        return {(x - b * out) / a, out};
      case PredictionType::sample:
        return {out, (x - a * out) / b};
      case PredictionType::v_prediction:
        return {a * x - b * out, a * out + b * x};
    }
    return {out, out};
  }

  double eta_;
  TimestepSpacing spacing_;
  bool clip_sample_;
  float final_alpha_cumprod_ = 1.0f;
  std::vector<float> abar_;
  std::vector<double> timesteps_;
  std::int64_t step_ratio_ = 1;
};

}  // namespace

std::unique_ptr<Scheduler> make_ddim(const SchedulerConfig& config, double eta) {
  return std::make_unique<DdimScheduler>(config, eta);
}

}  // namespace dinv::diffusion::detail
