// PNDM (Liu et al. 2022), as diffusers' PNDMScheduler: a few Runge-Kutta
// (PRK) warm-up steps, then the linear multistep (PLMS) method. Stable
// Diffusion folders set skip_prk_steps, which replaces the warm-up by one
// extra model call at the first timestep (counter 1 below).
#include <cmath>

#include <ATen/ATen.h>

#include "dinv/core/error.h"
#include "scheduler_impl.h"

namespace dinv::diffusion::detail {

namespace {

class PndmScheduler : public Scheduler {
 public:
  explicit PndmScheduler(const SchedulerConfig& config)
      : Scheduler(config),
        spacing_(config.timestep_spacing.value_or(TimestepSpacing::leading)),
        skip_prk_(config.skip_prk_steps.value_or(false)) {
    if (config.prediction_type == PredictionType::sample)
      throw ConfigError("the pndm sampler does not support prediction_type 'sample' (allowed: epsilon, v_prediction)");
    const auto abar = schedule().alphas_cumprod();
    abar_ = std::vector<float>(abar.data_ptr<float>(), abar.data_ptr<float>() + abar.numel());
    final_alpha_cumprod_ = config.set_alpha_to_one.value_or(false) ? 1.0f : abar_[0];
  }

  std::string name() const override { return "pndm"; }

  void set_timesteps(std::int64_t n) override {
    check_num_steps(n);
    const auto train = schedule().num_train_timesteps();
    step_ratio_ = train / n;
    auto desc = spaced_timesteps(spacing_, n, train, config().steps_offset, /*round_linspace=*/true);
    std::vector<double> asc(desc.rbegin(), desc.rend());
    prk_timesteps_.clear();
    timesteps_.clear();
    if (skip_prk_) {
      // The first timestep twice (one extra model call), then the rest.
      std::vector<double> plms(asc.begin(), asc.end() - 1);
      if (asc.size() >= 2) plms.push_back(asc[asc.size() - 2]);
      plms.push_back(asc.back());
      timesteps_.assign(plms.rbegin(), plms.rend());
    } else {
      set_prk_timesteps(asc, train / n / 2);
      timesteps_ = prk_timesteps_;
      for (auto it = asc.rbegin() + std::min<std::size_t>(3, asc.size()); it != asc.rend(); ++it)
        timesteps_.push_back(*it);
    }
    counter_ = 0;
    ets_.clear();
    cur_sample_ = at::Tensor();
    cur_model_output_ = at::Tensor();
  }

  at::Tensor timesteps() const override { return to_long_tensor(timesteps_); }

  at::Tensor step(const at::Tensor& model_output, std::int64_t i, const at::Tensor& sample,
                  const at::Tensor& noise) override {
    check_step(i, model_output, sample, noise);
    if (i != counter_)
      throw Error("pndm is a multistep sampler: steps must run in order, expected step " + std::to_string(counter_) +
                  ", got " + std::to_string(i));
    const auto t = static_cast<std::int64_t>(timesteps_[i]);
    at::Tensor prev = (!skip_prk_ && counter_ < static_cast<std::int64_t>(prk_timesteps_.size()))
                          ? step_prk(model_output, t, sample)
                          : step_plms(model_output, t, sample);
    ++counter_;
    return prev;
  }

 private:
  // Four model calls per PRK step, at t, t - h/2 (twice) and t - h, over the
  // last four spaced timesteps (the noisiest end).
  void set_prk_timesteps(const std::vector<double>& asc, std::int64_t half) {
    std::vector<double> pairs;
    for (std::size_t k = asc.size() - std::min<std::size_t>(4, asc.size()); k < asc.size(); ++k) {
      pairs.push_back(asc[k]);
      pairs.push_back(asc[k] + static_cast<double>(half));
    }
    pairs.pop_back();
    std::vector<double> doubled;
    for (double v : pairs) doubled.insert(doubled.end(), {v, v});
    // Drop the first and last entries and reverse (noisiest first).
    prk_timesteps_.assign(doubled.rbegin() + 1, doubled.rend() - 1);
  }

  at::Tensor step_prk(const at::Tensor& model_output, std::int64_t t, const at::Tensor& sample) {
    const std::int64_t diff_to_prev = counter_ % 2 ? 0 : step_ratio_ / 2;
    const std::int64_t prev_t = t - diff_to_prev;
    const auto t0 = static_cast<std::int64_t>(prk_timesteps_[counter_ / 4 * 4]);
    at::Tensor output = model_output;
    switch (counter_ % 4) {
      case 0:
        accumulate(1.0 / 6, model_output);
        ets_.push_back(model_output);
        cur_sample_ = sample;
        break;
      case 1:
      case 2:
        accumulate(1.0 / 3, model_output);
        break;
      case 3:
        output = cur_model_output_ + (1.0 / 6) * model_output;
        cur_model_output_ = at::Tensor();
        break;
    }
    const at::Tensor& from = cur_sample_.defined() ? cur_sample_ : sample;
    return prev_sample(from, t0, prev_t, output);
  }

  void accumulate(double weight, const at::Tensor& model_output) {
    at::Tensor term = weight * model_output;
    cur_model_output_ = cur_model_output_.defined() ? cur_model_output_ + term : 0 + term;
  }

  at::Tensor step_plms(const at::Tensor& model_output, std::int64_t t, const at::Tensor& sample) {
    std::int64_t prev_t = t - step_ratio_;
    if (counter_ != 1) {
      if (ets_.size() > 3) ets_.erase(ets_.begin(), ets_.end() - 3);
      ets_.push_back(model_output);
    } else {
      // The repeated first timestep: a second-order correction of step 0.
      prev_t = t;
      t = t + step_ratio_;
    }
    at::Tensor output = model_output;
    at::Tensor from = sample;
    const auto n = ets_.size();
    if (n == 1 && counter_ == 0) {
      cur_sample_ = sample;
    } else if (n == 1 && counter_ == 1) {
      output = (model_output + ets_[n - 1]) / 2;
      from = cur_sample_;
      cur_sample_ = at::Tensor();
    } else if (n == 2) {
      output = (3 * ets_[1] - ets_[0]) / 2;
    } else if (n == 3) {
      output = (23 * ets_[2] - 16 * ets_[1] + 5 * ets_[0]) / 12;
    } else {
      output = (1.0 / 24) * (55 * ets_[n - 1] - 59 * ets_[n - 2] + 37 * ets_[n - 3] - 9 * ets_[n - 4]);
    }
    return prev_sample(from, t, prev_t, output);
  }

  // Formula (9) of the PNDM paper: x_{t-delta} from x_t and the epsilon estimate.
  at::Tensor prev_sample(const at::Tensor& sample, std::int64_t t, std::int64_t prev_t, at::Tensor eps) const {
    const float abar_t = abar_.at(t);
    const float abar_prev = prev_t >= 0 ? abar_.at(prev_t) : final_alpha_cumprod_;
    const float beta_t = 1 - abar_t, beta_prev = 1 - abar_prev;
    if (schedule().prediction_type() == PredictionType::v_prediction)
      eps = std::pow(abar_t, 0.5f) * eps + std::pow(beta_t, 0.5f) * sample;
    const float sample_coeff = std::pow(abar_prev / abar_t, 0.5f);
    const float denom = abar_t * std::pow(beta_prev, 0.5f) + std::pow(abar_t * beta_t * abar_prev, 0.5f);
    return sample_coeff * sample - (abar_prev - abar_t) * eps / denom;
  }

  TimestepSpacing spacing_;
  bool skip_prk_;
  std::vector<float> abar_;
  float final_alpha_cumprod_ = 1.0f;
  std::int64_t step_ratio_ = 1;
  std::vector<double> prk_timesteps_, timesteps_;
  std::int64_t counter_ = 0;
  std::vector<at::Tensor> ets_;  // past epsilon estimates, oldest first
  at::Tensor cur_sample_, cur_model_output_;
};

}  // namespace

std::unique_ptr<Scheduler> make_pndm(const SchedulerConfig& config) { return std::make_unique<PndmScheduler>(config); }

}  // namespace dinv::diffusion::detail
