// What all samplers share: argument checks, the choice of sampler, the
// timestep spacing, and the `sampler.*` configuration keys.
#include "dinv/diffusion/scheduler.h"

#include <cmath>

#include <ATen/ATen.h>

#include "dinv/core/config.h"
#include "dinv/core/error.h"
#include "dinv/core/util.h"
#include "scheduler_impl.h"

namespace dinv::diffusion {

namespace {

std::string shape_of(const at::Tensor& t) {
  std::string s = "[";
  for (int64_t d = 0; d < t.dim(); ++d) s += (d ? ", " : "") + std::to_string(t.size(d));
  return s + "]";
}

}  // namespace

void Scheduler::check_num_steps(std::int64_t n) const {
  const auto train = schedule_.num_train_timesteps();
  if (n < 1 || n > train)
    throw ConfigError("number of sampling steps " + std::to_string(n) + " is not allowed (allowed: 1 to " +
                      std::to_string(train) + ", the model's num_train_timesteps)");
}

void Scheduler::check_step(std::int64_t i, const at::Tensor& model_output, const at::Tensor& sample,
                           const at::Tensor& noise) const {
  if (i < 0 || i >= num_steps())
    throw Error(name() + " step index " + std::to_string(i) + " is outside [0, " + std::to_string(num_steps()) +
                ") (call set_timesteps first)");
  if (!model_output.sizes().equals(sample.sizes()))
    throw Error(name() + " step: model output " + shape_of(model_output) + " does not match the sample " +
                shape_of(sample));
  if (needs_noise(i) && (!noise.defined() || !noise.sizes().equals(sample.sizes())))
    throw Error(name() + " step " + std::to_string(i) + " needs standard normal noise shaped like the sample " +
                shape_of(sample) + ", got " + (noise.defined() ? shape_of(noise) : std::string("none")));
}

const std::vector<std::string>& sampler_names() {
  static const std::vector<std::string> names = {"ddim", "pndm", "dpmpp", "euler", "euler_a"};
  return names;
}

std::string sampler_name_for_class(const std::string& class_name) {
  if (class_name == "DDIMScheduler") return "ddim";
  if (class_name == "PNDMScheduler") return "pndm";
  if (class_name == "DPMSolverMultistepScheduler") return "dpmpp";
  if (class_name == "EulerDiscreteScheduler") return "euler";
  if (class_name == "EulerAncestralDiscreteScheduler") return "euler_a";
  throw ConfigError("scheduler class '" + class_name +
                    "' of the model folder is not supported (allowed: DDIMScheduler, PNDMScheduler, "
                    "DPMSolverMultistepScheduler, EulerDiscreteScheduler, EulerAncestralDiscreteScheduler); "
                    "choose one with sampler.name = " +
                    join(sampler_names()));
}

std::unique_ptr<Scheduler> make_scheduler(const SchedulerConfig& folder_config, const SamplerOptions& options) {
  const std::string name = options.name == "folder" ? sampler_name_for_class(folder_config.class_name) : options.name;
  SchedulerConfig config = folder_config;
  if (options.timestep_spacing != "folder")
    config.timestep_spacing =
        parse_choice(kTimestepSpacingNames, options.timestep_spacing, "sampler options", "timestep_spacing");
  if (options.karras_sigmas) {
    if (name != "dpmpp" && name != "euler")
      throw ConfigError("Karras sigmas are only available for the dpmpp and euler samplers, not '" + name + "'");
    config.use_karras_sigmas = true;
  }
  if (!(options.eta >= 0) || !std::isfinite(options.eta))
    throw ConfigError("DDIM eta " + std::to_string(options.eta) + " is not allowed (allowed: a finite value >= 0)");
  if (name == "ddim") return detail::make_ddim(config, options.eta);
  if (name == "pndm") return detail::make_pndm(config);
  if (name == "dpmpp") return detail::make_dpm_solver_multistep(config);
  if (name == "euler") return detail::make_euler(config);
  if (name == "euler_a") return detail::make_euler_ancestral(config);
  throw ConfigError("sampler '" + name + "' is unknown (allowed: folder, " + join(sampler_names()) + ")");
}

namespace {

// "folder" (the model folder's own choice) before `names`.
std::vector<std::string> with_folder(std::vector<std::string> names) {
  names.insert(names.begin(), "folder");
  return names;
}

}  // namespace

void register_diffusion_options(ConfigSchema& s) {
  s.add("sampler.name", "folder",
        "sampler: folder (the model's own scheduler class) or one of ddim, pndm, dpmpp, "
        "euler, euler_a")
      .choices(with_folder(sampler_names()));
  s.add("sampler.steps", 100, "number of sampling steps (1 to the model's num_train_timesteps)").min(1);
  s.add("sampler.guidance", 2.0, "classifier-free guidance scale w: eps_u + w (eps_c - eps_u)").min(0);
  s.add("sampler.eta", 1.0, "DDIM eta (0: deterministic; the method passes 1); other samplers ignore it").min(0);
  s.add("sampler.timestep_spacing", "folder",
        "timestep spacing: folder (the model's config), leading, trailing, "
        "linspace")
      .choices(with_folder(kTimestepSpacingNames.names()));
  s.add("sampler.karras_sigmas", false, "use Karras sigmas (dpmpp and euler only)");
}

namespace detail {

std::vector<double> spaced_timesteps(TimestepSpacing spacing, std::int64_t n, std::int64_t train_steps,
                                     std::int64_t steps_offset, bool round_linspace) {
  std::vector<double> t;
  switch (spacing) {
    case TimestepSpacing::leading: {
      const std::int64_t ratio = train_steps / n;
      for (std::int64_t k = n - 1; k >= 0; --k) t.push_back(static_cast<double>(k * ratio + steps_offset));
      break;
    }
    case TimestepSpacing::trailing: {
      // numpy.arange(train_steps, 0, -ratio): length ceil(-T / -ratio), values T - k * ratio.
      const double ratio = static_cast<double>(train_steps) / static_cast<double>(n);
      const auto len = static_cast<std::int64_t>(std::ceil((0.0 - train_steps) / -ratio));
      for (std::int64_t k = 0; k < len; ++k) t.push_back(std::nearbyint(train_steps + k * -ratio) - 1);
      break;
    }
    case TimestepSpacing::linspace: {
      // numpy.linspace: k * step, with the end point set exactly.
      const double stop = static_cast<double>(train_steps - 1);
      const double step = n > 1 ? stop / static_cast<double>(n - 1) : 0.0;
      for (std::int64_t k = n - 1; k >= 0; --k) {
        double v = (n > 1 && k == n - 1) ? stop : static_cast<double>(k) * step;
        t.push_back(round_linspace ? std::nearbyint(v) : v);
      }
      break;
    }
  }
  return t;
}

at::Tensor to_float_tensor(const std::vector<double>& values) { return at::tensor(values, at::kDouble).to(at::kFloat); }

at::Tensor to_long_tensor(const std::vector<double>& values) { return at::tensor(values, at::kDouble).to(at::kLong); }

}  // namespace detail

}  // namespace dinv::diffusion
