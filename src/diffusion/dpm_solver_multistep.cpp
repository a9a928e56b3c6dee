// DPM-Solver++ multistep (Lu et al. 2022), as diffusers'
// DPMSolverMultistepScheduler with algorithm_type "dpmsolver++": the model
// output is turned into a data (x0) prediction, and each step integrates it
// exactly in log-SNR lambda with a first- or second-order (midpoint or Heun)
// multistep formula. Order 1 at the start (no history yet) and at the end
// (lower_order_final / final sigma 0).
#include <cmath>

#include <ATen/ATen.h>

#include "dinv/core/error.h"
#include "scheduler_impl.h"

namespace dinv::diffusion::detail {

namespace {

// alpha_t and sigma_t of the VP process for a Karras sigma = sigma_t / alpha_t.
struct AlphaSigma {
  float alpha, sigma, lambda;
};

AlphaSigma alpha_sigma(float karras_sigma) {
  const float alpha = 1 / std::pow(karras_sigma * karras_sigma + 1, 0.5f);
  const float sigma = karras_sigma * alpha;
  return {alpha, sigma, std::log(alpha) - std::log(sigma)};
}

class DpmSolverMultistepScheduler : public Scheduler {
 public:
  explicit DpmSolverMultistepScheduler(const SchedulerConfig& config)
      : Scheduler(config), spacing_(config.timestep_spacing.value_or(TimestepSpacing::linspace)) {
    if (config.algorithm_type != "dpmsolver++")
      throw ConfigError("dpmpp sampler: algorithm_type '" + config.algorithm_type +
                        "' is not supported (allowed: dpmsolver++)");
    if (config.solver_order != 1 && config.solver_order != 2)
      throw ConfigError("dpmpp sampler: solver_order " + std::to_string(config.solver_order) +
                        " is not supported (allowed: 1, 2)");
    if (config.solver_type != "midpoint" && config.solver_type != "heun")
      throw ConfigError("dpmpp sampler: solver_type '" + config.solver_type +
                        "' is not supported (allowed: midpoint, heun)");
    if (config.final_sigmas_type != "zero" && config.final_sigmas_type != "sigma_min")
      throw ConfigError("dpmpp sampler: final_sigmas_type '" + config.final_sigmas_type +
                        "' is not supported (allowed: zero, sigma_min)");
  }

  std::string name() const override { return "dpmpp"; }

  void set_timesteps(std::int64_t n) override {
    check_num_steps(n);
    const auto train = schedule().num_train_timesteps();
    // n + 1 points with the last (t = 0) dropped, except for trailing.
    if (spacing_ == TimestepSpacing::trailing) {
      timesteps_ = spaced_timesteps(spacing_, n, train, config().steps_offset, true);
    } else {
      timesteps_ = spaced_timesteps(spacing_, n + 1, train, config().steps_offset, true);
      timesteps_.pop_back();
    }
    const at::Tensor table = schedule().sigmas();  // float32, increasing in t
    std::vector<double> sig(table.data_ptr<float>(), table.data_ptr<float>() + table.numel());
    std::vector<double> step_sigmas;
    if (config().use_karras_sigmas) {
      step_sigmas = sigma_math::karras(sig.front(), sig.back(), n);
      auto logs = table.log();
      std::vector<float> log_sigmas(logs.data_ptr<float>(), logs.data_ptr<float>() + logs.numel());
      timesteps_.clear();
      for (double s : step_sigmas) {
        double t = sigma_math::sigma_to_t(s, log_sigmas);
        timesteps_.push_back(config().beta_schedule == BetaSchedule::squaredcos_cap_v2 ? t : std::nearbyint(t));
      }
    } else {
      step_sigmas = sigma_math::interp(timesteps_, sig);
    }
    step_sigmas.push_back(config().final_sigmas_type == "zero" ? 0.0 : sig.front());
    sigmas_.assign(step_sigmas.begin(), step_sigmas.end());
    model_outputs_.clear();
    lower_order_nums_ = 0;
    next_step_ = 0;
  }

  at::Tensor timesteps() const override { return to_long_tensor(timesteps_); }

  at::Tensor step(const at::Tensor& model_output, std::int64_t i, const at::Tensor& sample,
                  const at::Tensor& noise) override {
    check_step(i, model_output, sample, noise);
    if (i != next_step_)
      throw Error("dpmpp is a multistep sampler: steps must run in order, expected step " + std::to_string(next_step_) +
                  ", got " + std::to_string(i));
    const auto n = static_cast<std::int64_t>(timesteps_.size());
    // The last step is first order for short runs and whenever the final sigma
    // is 0. (diffusers' "second order at the second-to-last step" rule only
    // matters for order 3, which dinv does not offer.)
    const bool first_order_final = i == n - 1 && (config().euler_at_final || (config().lower_order_final && n < 15) ||
                                                  config().final_sigmas_type == "zero");

    model_outputs_.push_back(data_prediction(model_output, sample, i));
    if (model_outputs_.size() > 2) model_outputs_.erase(model_outputs_.begin());

    at::Tensor prev;
    if (config().solver_order == 1 || lower_order_nums_ < 1 || first_order_final)
      prev = first_order_update(model_outputs_.back(), sample, i);
    else
      prev = second_order_update(sample, i);
    if (lower_order_nums_ < config().solver_order) ++lower_order_nums_;
    ++next_step_;
    return prev;
  }

 private:
  // x0 predicted from the model output at step i.
  at::Tensor data_prediction(const at::Tensor& out, const at::Tensor& x, std::int64_t i) const {
    const AlphaSigma s = alpha_sigma(sigmas_[i]);
    switch (schedule().prediction_type()) {
      case PredictionType::epsilon:
        return (x - s.sigma * out) / s.alpha;
      case PredictionType::sample:
        return out;
      case PredictionType::v_prediction:
        return s.alpha * x - s.sigma * out;
    }
    return out;
  }

  // DDIM-equivalent step from sigma_i to sigma_{i+1}.
  at::Tensor first_order_update(const at::Tensor& x0, const at::Tensor& x, std::int64_t i) const {
    const AlphaSigma t = alpha_sigma(sigmas_[i + 1]), s = alpha_sigma(sigmas_[i]);
    const float h = t.lambda - s.lambda;
    return (t.sigma / s.sigma) * x - (t.alpha * (std::exp(-h) - 1.0f)) * x0;
  }

  // Two-step rule from the data predictions at steps i - 1 and i.
  at::Tensor second_order_update(const at::Tensor& x, std::int64_t i) const {
    const AlphaSigma t = alpha_sigma(sigmas_[i + 1]), s0 = alpha_sigma(sigmas_[i]), s1 = alpha_sigma(sigmas_[i - 1]);
    const at::Tensor& m0 = model_outputs_[1];
    const at::Tensor& m1 = model_outputs_[0];
    const float h = t.lambda - s0.lambda, h0 = s0.lambda - s1.lambda;
    const float r0 = h0 / h;
    const at::Tensor d0 = m0, d1 = (1.0f / r0) * (m0 - m1);
    const float expm = std::exp(-h) - 1.0f;
    if (config().solver_type == "midpoint")
      return (t.sigma / s0.sigma) * x - (t.alpha * expm) * d0 - 0.5 * (t.alpha * expm) * d1;
    return (t.sigma / s0.sigma) * x - (t.alpha * expm) * d0 + (t.alpha * (expm / h + 1.0f)) * d1;
  }

  TimestepSpacing spacing_;
  std::vector<double> timesteps_;
  std::vector<float> sigmas_;              // one per step, plus the final one
  std::vector<at::Tensor> model_outputs_;  // x0 predictions of the last two steps, oldest first
  std::int64_t lower_order_nums_ = 0;
  std::int64_t next_step_ = 0;
};

}  // namespace

std::unique_ptr<Scheduler> make_dpm_solver_multistep(const SchedulerConfig& config) {
  return std::make_unique<DpmSolverMultistepScheduler>(config);
}

}  // namespace dinv::diffusion::detail
