// The DDPM noise schedule of a diffusers model folder
// (`scheduler/scheduler_config.json`): betas, alphas_cumprod, and the forward
// process the embedding stage trains with (add_noise, get_velocity). The
// samplers in scheduler.h are built on top of it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "dinv/core/error.h"
#include "dinv/core/settings.h"

namespace dinv::diffusion {

// The closed sets of scheduler_config.json, each with its diffusers
// spellings; parsed once when the file is read.
// What the denoiser predicts.
enum class PredictionType { epsilon, v_prediction, sample };
// How inference timesteps are spread over the training timesteps.
enum class TimestepSpacing { leading, trailing, linspace };
// How betas run from beta_start to beta_end (unless trained_betas are given).
enum class BetaSchedule { linear, scaled_linear, squaredcos_cap_v2 };
inline const settings::Names<PredictionType> kPredictionTypeNames{{{PredictionType::epsilon, "epsilon"},
                                                                   {PredictionType::v_prediction, "v_prediction"},
                                                                   {PredictionType::sample, "sample"}}};
inline const settings::Names<TimestepSpacing> kTimestepSpacingNames{{{TimestepSpacing::leading, "leading"},
                                                                     {TimestepSpacing::trailing, "trailing"},
                                                                     {TimestepSpacing::linspace, "linspace"}}};
inline const settings::Names<BetaSchedule> kBetaScheduleNames{{{BetaSchedule::linear, "linear"},
                                                               {BetaSchedule::scaled_linear, "scaled_linear"},
                                                               {BetaSchedule::squaredcos_cap_v2, "squaredcos_cap_v2"}}};

// The value named `name` of key `key`; ConfigError naming `origin` (the file),
// the key, the value and the allowed names otherwise.
template <class E>
E parse_choice(const settings::Names<E>& names, const std::string& name, const std::string& origin, const char* key) {
  if (const auto value = names.find(name)) return *value;
  throw ConfigError(origin + ": " + key + " '" + name + "' is not supported by dinv (allowed: " + names.listed() + ")");
}

// The keys of scheduler_config.json that dinv understands. Keys whose default
// differs between diffusers scheduler classes are optional: each sampler
// applies its own class default, as diffusers' `from_config` does.
// scheduler_config.json's num_train_timesteps is at most this (SD uses 1000;
// the schedule's tables hold one value per timestep).
constexpr std::int64_t kMaxTrainTimesteps = 1'000'000;

struct SchedulerConfig {
  std::string class_name;  // "_class_name", e.g. "PNDMScheduler"
  std::int64_t num_train_timesteps = 1000;
  double beta_start = 0.0001;
  double beta_end = 0.02;
  BetaSchedule beta_schedule = BetaSchedule::linear;
  std::vector<double> trained_betas;  // used instead of beta_schedule when non-empty
  PredictionType prediction_type = PredictionType::epsilon;
  std::int64_t steps_offset = 0;
  double clip_sample_range = 1.0;
  std::optional<TimestepSpacing> timestep_spacing;
  std::optional<bool> set_alpha_to_one;
  std::optional<bool> clip_sample;
  std::optional<bool> skip_prk_steps;
  // DPM-Solver multistep.
  std::int64_t solver_order = 2;
  std::string algorithm_type = "dpmsolver++";
  std::string solver_type = "midpoint";
  bool lower_order_final = true;
  bool euler_at_final = false;
  std::string final_sigmas_type = "zero";
  // DPM-Solver and Euler.
  bool use_karras_sigmas = false;
  std::string interpolation_type = "linear";

  // Parse the JSON text of a scheduler_config.json; `origin` names it in errors.
  static SchedulerConfig from_json(const std::string& text, const std::string& origin);
  static SchedulerConfig from_file(const std::string& path);
};

class NoiseSchedule {
 public:
  explicit NoiseSchedule(const SchedulerConfig& config);

  const SchedulerConfig& config() const { return config_; }
  std::int64_t num_train_timesteps() const { return config_.num_train_timesteps; }
  PredictionType prediction_type() const { return config_.prediction_type; }
  // float32 CPU tensors [num_train_timesteps], computed as diffusers does (in float32).
  const at::Tensor& betas() const { return betas_; }
  const at::Tensor& alphas_cumprod() const { return alphas_cumprod_; }
  // Karras-style noise levels ((1 - abar) / abar)^0.5, float32 [num_train_timesteps].
  at::Tensor sigmas() const;

  // Forward process for a batch of per-sample integer timesteps t [B]:
  // sqrt(abar_t) x0 + sqrt(1 - abar_t) noise.
  at::Tensor add_noise(const at::Tensor& x0, const at::Tensor& noise, const at::Tensor& t) const;
  // v = sqrt(abar_t) noise - sqrt(1 - abar_t) x0 (the v-prediction target).
  at::Tensor get_velocity(const at::Tensor& x0, const at::Tensor& noise, const at::Tensor& t) const;
  // What the denoiser should output for these inputs under prediction_type.
  at::Tensor training_target(const at::Tensor& x0, const at::Tensor& noise, const at::Tensor& t) const;

 private:
  // alphas_cumprod[t] as [B, 1, 1, ...] matching `like`, in like's dtype and device.
  at::Tensor gather_per_sample(const at::Tensor& values, const at::Tensor& t, const at::Tensor& like) const;
  void check_timesteps(const at::Tensor& t, const at::Tensor& x0, const char* what) const;

  SchedulerConfig config_;
  at::Tensor betas_;
  at::Tensor alphas_cumprod_;
};

// Noise-level helpers shared by the sigma-based samplers (DPM-Solver, Euler).
namespace sigma_math {
// numpy.interp(x, arange(len(table)), table) in double precision.
std::vector<double> interp(const std::vector<double>& x, const std::vector<double>& table);
// Karras et al. (2022) schedule with rho = 7 between sigma_max and sigma_min.
std::vector<double> karras(double sigma_min, double sigma_max, std::int64_t n);
// Fractional training timestep whose log-sigma interpolates to `sigma`.
double sigma_to_t(double sigma, const std::vector<float>& log_sigmas);
}  // namespace sigma_math

}  // namespace dinv::diffusion
