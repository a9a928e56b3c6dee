// What the samplers and the guided loop need from a model: predict the
// model output (epsilon, v or x0, as the scheduler's prediction_type says)
// for latents `sample` [B, C, h, w] at timesteps `t` [B] under conditioning
// `cond` [B, T, D]. The UNet provides it; tests provide simple closed forms.
#pragma once

#include <functional>

#include <ATen/core/Tensor.h>

namespace dinv::diffusion {

using Denoiser = std::function<at::Tensor(const at::Tensor& sample, const at::Tensor& t, const at::Tensor& cond)>;

}  // namespace dinv::diffusion
