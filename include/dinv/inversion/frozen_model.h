// What embedding learning needs from the frozen Stable Diffusion: the VAE
// posterior of images, the UNet's prediction under a conditioning tensor, and
// the training noise schedule. The sd and diffusion modules provide it for a
// real diffusers folder (make_frozen_model); tests can provide small stand-ins.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include <ATen/core/Tensor.h>

namespace dinv::inversion {

struct Posterior {
  at::Tensor mean, std;  // [B, C, h, w], unscaled latent space
};

struct FrozenModel {
  // images [B, 3, H, W] in [-1, 1] -> diagonal Gaussian posterior. No gradients.
  std::function<Posterior(const at::Tensor& images)> encode;
  // noisy latents [B, C, h, w], integer timesteps [B], conditioning [B, T, D]
  // -> model output [B, C, h, w]; differentiable with respect to `cond`.
  std::function<at::Tensor(const at::Tensor& noisy, const at::Tensor& t, const at::Tensor& cond)> predict;
  // The training schedule: noisy = add_noise(x0, noise, t); the loss target
  // (noise for epsilon models, velocity for v-prediction models).
  std::function<at::Tensor(const at::Tensor& x0, const at::Tensor& noise, const at::Tensor& t)> add_noise;
  std::function<at::Tensor(const at::Tensor& x0, const at::Tensor& noise, const at::Tensor& t)> target;

  double scaling_factor = 0.18215;
  std::int64_t num_train_timesteps = 1000;
  std::int64_t cond_dim = 768;  // the UNet's cross_attention_dim
  std::int64_t latent_channels = 4;
  std::int64_t latent_factor = 8;  // image size / latent size
  std::string fingerprint;         // identity of the weights and configs
  std::string description;
};

}  // namespace dinv::inversion
