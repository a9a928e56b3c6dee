// Euler (Karras et al. 2022, Algorithm 2 without churn) and its ancestral
// variant, as diffusers' EulerDiscreteScheduler and
// EulerAncestralDiscreteScheduler. Both walk down the Karras noise levels
// sigma = sqrt((1 - abar) / abar) interpolated at the (fractional) timesteps;
// the model sees x / sqrt(sigma^2 + 1). The ancestral step goes below the next
// sigma and adds fresh noise back up to it.
#include <algorithm>
#include <cmath>

#include <ATen/ATen.h>

#include "dinv/core/error.h"
#include "scheduler_impl.h"

namespace dinv::diffusion::detail {

namespace {

class EulerScheduler : public Scheduler {
 public:
  explicit EulerScheduler(const SchedulerConfig& config)
      : Scheduler(config), spacing_(config.timestep_spacing.value_or(TimestepSpacing::linspace)) {
    if (config.interpolation_type != "linear")
      throw ConfigError("euler sampler: interpolation_type '" + config.interpolation_type +
                        "' is not supported (allowed: linear)");
    if (config.final_sigmas_type != "zero" && config.final_sigmas_type != "sigma_min")
      throw ConfigError("euler sampler: final_sigmas_type '" + config.final_sigmas_type +
                        "' is not supported (allowed: zero, sigma_min)");
  }

  std::string name() const override { return "euler"; }

  void set_timesteps(std::int64_t n) override {
    check_num_steps(n);
    // Timesteps are float32 here: linspace is not rounded.
    std::vector<double> t = spaced_timesteps(spacing_, n, schedule().num_train_timesteps(), config().steps_offset,
                                             /*round_linspace=*/false);
    for (double& v : t) v = static_cast<float>(v);
    const at::Tensor table = schedule().sigmas();
    std::vector<double> sig(table.data_ptr<float>(), table.data_ptr<float>() + table.numel());
    std::vector<double> step_sigmas = sigma_math::interp(t, sig);
    if (config().use_karras_sigmas) {
      step_sigmas = sigma_math::karras(step_sigmas.back(), step_sigmas.front(), n);
      auto logs = table.log();
      std::vector<float> log_sigmas(logs.data_ptr<float>(), logs.data_ptr<float>() + logs.numel());
      for (std::size_t k = 0; k < t.size(); ++k)
        t[k] = static_cast<float>(sigma_math::sigma_to_t(step_sigmas[k], log_sigmas));
    }
    step_sigmas.push_back(final_sigma(sig));
    timesteps_ = t;
    sigmas_.assign(step_sigmas.begin(), step_sigmas.end());
  }

  at::Tensor timesteps() const override { return to_float_tensor(timesteps_); }

  double init_noise_sigma() const override {
    const float max_sigma = *std::max_element(sigmas_.begin(), sigmas_.end());
    if (spacing_ == TimestepSpacing::linspace || spacing_ == TimestepSpacing::trailing) return max_sigma;
    return std::pow(max_sigma * max_sigma + 1, 0.5f);
  }

  at::Tensor scale_model_input(const at::Tensor& sample, std::int64_t i) const override {
    const float sigma = sigmas_.at(i);
    return sample / std::pow(sigma * sigma + 1, 0.5f);
  }

  at::Tensor step(const at::Tensor& model_output, std::int64_t i, const at::Tensor& sample,
                  const at::Tensor& noise) override {
    check_step(i, model_output, sample, noise);
    const float sigma = sigmas_[i];
    const at::Tensor x0 = predict_x0(model_output, sample, sigma);
    const at::Tensor derivative = (sample - x0) / sigma;
    return sample + derivative * (sigmas_[i + 1] - sigma);
  }

 protected:
  virtual double final_sigma(const std::vector<double>& sig) const {
    return config().final_sigmas_type == "zero" ? 0.0 : sig.front();
  }

  at::Tensor predict_x0(const at::Tensor& out, const at::Tensor& x, float sigma) const {
    switch (schedule().prediction_type()) {
      case PredictionType::epsilon:
        return x - sigma * out;
      case PredictionType::v_prediction:
        return out * (-sigma / std::pow(sigma * sigma + 1, 0.5f)) + x / (sigma * sigma + 1);
      case PredictionType::sample:
        return out;
    }
    return out;
  }

  TimestepSpacing spacing_;
  std::vector<double> timesteps_;
  std::vector<float> sigmas_;  // one per step, plus the final 0
};

class EulerAncestralScheduler : public EulerScheduler {
 public:
  explicit EulerAncestralScheduler(const SchedulerConfig& config) : EulerScheduler(config) {
    if (config.use_karras_sigmas)
      throw ConfigError("euler_a sampler: use_karras_sigmas = true is not supported (allowed: false)");
    if (config.prediction_type == PredictionType::sample)
      throw ConfigError("euler_a sampler: prediction_type 'sample' is not supported (allowed: epsilon, v_prediction)");
  }

  std::string name() const override { return "euler_a"; }
  bool needs_noise(std::int64_t) const override { return true; }

  at::Tensor step(const at::Tensor& model_output, std::int64_t i, const at::Tensor& sample,
                  const at::Tensor& noise) override {
    check_step(i, model_output, sample, noise);
    const float sigma_from = sigmas_[i], sigma_to = sigmas_[i + 1];
    // Split the move to sigma_to into a deterministic part down to sigma_down
    // and fresh noise of std sigma_up (sigma_down^2 + sigma_up^2 = sigma_to^2).
    const float sigma_up = std::pow(
        sigma_to * sigma_to * (sigma_from * sigma_from - sigma_to * sigma_to) / (sigma_from * sigma_from), 0.5f);
    const float sigma_down = std::pow(sigma_to * sigma_to - sigma_up * sigma_up, 0.5f);
    const at::Tensor x0 = predict_x0(model_output, sample, sigma_from);
    const at::Tensor derivative = (sample - x0) / sigma_from;
    return sample + derivative * (sigma_down - sigma_from) + noise * sigma_up;
  }

 protected:
  double final_sigma(const std::vector<double>&) const override { return 0.0; }
};

}  // namespace

std::unique_ptr<Scheduler> make_euler(const SchedulerConfig& config) {
  return std::make_unique<EulerScheduler>(config);
}

std::unique_ptr<Scheduler> make_euler_ancestral(const SchedulerConfig& config) {
  return std::make_unique<EulerAncestralScheduler>(config);
}

}  // namespace dinv::diffusion::detail
