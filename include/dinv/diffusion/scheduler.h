// Samplers (diffusers calls them schedulers): each one file in src/diffusion/,
// all behind this interface. The loop is
//
//   s->set_timesteps(n);
//   x = noise * s->init_noise_sigma();
//   for (i = 0; i < s->num_steps(); ++i) {
//     out = model(s->scale_model_input(x, i), s->timesteps()[i], cond);
//     x = s->step(out, i, x, s->needs_noise(i) ? per_sample_noise() : at::Tensor());
//   }
//
// Steps are addressed by their index in timesteps() (diffusers keeps the same
// index internally). Stochastic samplers never draw random numbers themselves:
// the caller passes the noise, drawn from per-sample generators, so a batch
// gives the same result as its samples one by one, and tests can feed the
// same noise to diffusers.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "dinv/diffusion/noise_schedule.h"

namespace dinv {
class ConfigSchema;
}

namespace dinv::diffusion {

class Scheduler {
 public:
  virtual ~Scheduler() = default;

  // "ddim", "pndm", "dpmpp", "euler" or "euler_a".
  virtual std::string name() const = 0;
  // Choose `n` inference steps (1 <= n <= num_train_timesteps) and reset any
  // multistep state. ConfigError naming n otherwise.
  virtual void set_timesteps(std::int64_t n) = 0;
  // The timesteps the model is called at, in order: int64 for DDIM, PNDM and
  // DPM-Solver, float32 for Euler (fractional under Karras sigmas). CPU, 1-D.
  virtual at::Tensor timesteps() const = 0;
  std::int64_t num_steps() const { return timesteps().size(0); }
  // Standard deviation of the initial latents (1 for DDPM-style samplers).
  virtual double init_noise_sigma() const { return 1.0; }
  // The model input at step i (Euler divides by sqrt(sigma^2 + 1)).
  virtual at::Tensor scale_model_input(const at::Tensor& sample, std::int64_t i) const { return sample; }
  // Whether step i needs `noise` (standard normal, shaped like the sample).
  virtual bool needs_noise(std::int64_t i) const { return false; }
  // One step from `sample` at step i to the sample at step i + 1.
  virtual at::Tensor step(const at::Tensor& model_output, std::int64_t i, const at::Tensor& sample,
                          const at::Tensor& noise = at::Tensor()) = 0;

  const NoiseSchedule& schedule() const { return schedule_; }

 protected:
  explicit Scheduler(const SchedulerConfig& config) : schedule_(config) {}
  const SchedulerConfig& config() const { return schedule_.config(); }
  // Checks shared by all samplers.
  void check_num_steps(std::int64_t n) const;
  void check_step(std::int64_t i, const at::Tensor& model_output, const at::Tensor& sample,
                  const at::Tensor& noise) const;

 private:
  NoiseSchedule schedule_;
};

// What the user chose, on top of the folder's scheduler_config.json.
struct SamplerOptions {
  std::string name = "folder";              // folder | ddim | pndm | dpmpp | euler | euler_a
  std::string timestep_spacing = "folder";  // folder | leading | trailing | linspace
  double eta = 0.0;                         // DDIM only: 0 deterministic, 1 DDPM-like
  bool karras_sigmas = false;               // DPM-Solver++ / Euler: force Karras sigmas on
};

// Names accepted by SamplerOptions::name besides "folder".
const std::vector<std::string>& sampler_names();
// The dinv name of a diffusers scheduler class ("PNDMScheduler" -> "pndm").
std::string sampler_name_for_class(const std::string& class_name);

// Build the sampler `options.name` (or the folder's own class) over `config`.
std::unique_ptr<Scheduler> make_scheduler(const SchedulerConfig& config, const SamplerOptions& options = {});

// Config keys `sampler.*` (name, steps, guidance, eta, timestep_spacing, karras_sigmas).
void register_diffusion_options(ConfigSchema& schema);

}  // namespace dinv::diffusion
