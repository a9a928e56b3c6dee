#include "dinv/inversion/sd_model.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include "dinv/core/error.h"
#include "dinv/diffusion/noise_schedule.h"

namespace dinv::inversion {

FrozenModel make_frozen_model(std::shared_ptr<sd::Pipeline> p) {
  const auto& vc = p->vae->config();
  const auto& uc = p->unet->config();
  if (vc.shift_factor && *vc.shift_factor != 0.0)
    throw ModelError(p->dir + "/vae/config.json: shift_factor " + std::to_string(*vc.shift_factor) +
                     " is not supported by embedding learning (Stable Diffusion 1.x/2.x VAEs have none)");
  auto schedule = std::make_shared<diffusion::NoiseSchedule>(
      diffusion::SchedulerConfig::from_file(p->dir + "/scheduler/scheduler_config.json"));

  FrozenModel m;
  m.scaling_factor = vc.scaling_factor;
  m.num_train_timesteps = schedule->num_train_timesteps();
  m.cond_dim = uc.cross_attention_dim.front();
  m.latent_channels = uc.in_channels;
  m.latent_factor = vc.downsampling_factor();
  m.fingerprint = p->fingerprint;
  m.description = p->describe();
  m.encode = [p](const at::Tensor& images) {
    at::NoGradGuard no_grad;
    const auto posterior = p->vae->encode(images.to(p->device, p->dtype));
    return Posterior{posterior.mean.to(at::kFloat), posterior.std.to(at::kFloat)};
  };
  // Gradients flow into `cond` only: the UNet's parameters are frozen.
  m.predict = [p](const at::Tensor& noisy, const at::Tensor& t, const at::Tensor& cond) {
    return p->unet->forward(noisy.to(p->dtype), t, cond.to(p->dtype));
  };
  m.add_noise = [schedule](const at::Tensor& x0, const at::Tensor& noise, const at::Tensor& t) {
    return schedule->add_noise(x0, noise, t);
  };
  m.target = [schedule](const at::Tensor& x0, const at::Tensor& noise, const at::Tensor& t) {
    return schedule->training_target(x0, noise, t);
  };
  return m;
}

}  // namespace dinv::inversion
