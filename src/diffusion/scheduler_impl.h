// Internal to src/diffusion: the constructors of the samplers (one file each)
// and the timestep-spacing arithmetic they share with diffusers.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "dinv/diffusion/scheduler.h"

namespace dinv::diffusion::detail {

std::unique_ptr<Scheduler> make_ddim(const SchedulerConfig& config, double eta);
std::unique_ptr<Scheduler> make_pndm(const SchedulerConfig& config);
std::unique_ptr<Scheduler> make_dpm_solver_multistep(const SchedulerConfig& config);
std::unique_ptr<Scheduler> make_euler(const SchedulerConfig& config);
std::unique_ptr<Scheduler> make_euler_ancestral(const SchedulerConfig& config);

// `n` timesteps over [0, train_steps), largest first, as the diffusers
// schedulers space them (numpy arithmetic, round half to even):
//   leading:  k * (train_steps / n) + offset        (integer division)
//   trailing: round(train_steps - k * train_steps / n) - 1
//   linspace: linspace(0, train_steps - 1, n), rounded only if `round_linspace`.
std::vector<double> spaced_timesteps(TimestepSpacing spacing, std::int64_t n, std::int64_t train_steps,
                                     std::int64_t steps_offset, bool round_linspace);

// Float32 copies of a double vector, as a 1-D CPU tensor.
at::Tensor to_float_tensor(const std::vector<double>& values);
at::Tensor to_long_tensor(const std::vector<double>& values);

}  // namespace dinv::diffusion::detail
