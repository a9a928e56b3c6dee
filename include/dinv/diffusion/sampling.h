// The guided sampling loop of stage 2: classifier-free guidance with one
// denoiser call per step on the concatenated [uncond; cond] batch, a sampler
// from scheduler.h, per-sample random streams, then VAE decode and conversion
// to uint8 images as diffusers' pipelines do.
#pragma once

#include <cstdint>
#include <functional>

#include <ATen/core/Tensor.h>

#include "dinv/diffusion/denoiser.h"
#include "dinv/diffusion/scheduler.h"

namespace dinv::diffusion {

// VAE decode: latents [B, C, h, w] (already divided by the scaling factor)
// -> images [B, 3, H, W] in [-1, 1].
using Decoder = std::function<at::Tensor(const at::Tensor& latents)>;

struct SamplingOptions {
  std::int64_t steps = 50;
  double guidance = 2.0;                   // w in eps_u + w (eps_c - eps_u); >= 0
  std::uint64_t seed = 0;                  // run seed
  std::int64_t first_sample_index = 0;     // global index of batch row 0 (seeds its generator)
  std::int64_t height = 512, width = 512;  // image resolution, multiples of vae_scale_factor
  std::int64_t vae_scale_factor = 8;
  std::int64_t latent_channels = 4;
  double latent_scaling = 0.18215;       // latents are divided by it before decoding
  std::int64_t cross_attention_dim = 0;  // conditioning width D the denoiser expects (0: not checked)
};

struct SamplingResult {
  at::Tensor latents;  // final latents [B, C, h, w], float32, before scaling for the decoder
  at::Tensor images;   // uint8 [B, H, W, 3] (undefined without a decoder)
};

// The seed of sample `index`'s generator: a fixed mix of (seed, index), so a
// sample's random numbers do not depend on the batch it is computed in.
std::uint64_t sample_seed(std::uint64_t seed, std::int64_t index);

// Run the guided loop for cond [B, T, D] and uncond [1, T, D] (shared) or
// [B, T, D]. `initial_latents` [B, C, h, w] replaces the first draw from each
// sample's generator; like diffusers it is multiplied by init_noise_sigma.
// Latents live on cond's device; random numbers are drawn on the CPU (same
// numbers on every device) and moved there.
SamplingResult sample_guided(const Denoiser& denoiser, const Decoder& decoder, Scheduler& scheduler,
                             const at::Tensor& cond, const at::Tensor& uncond, const SamplingOptions& options,
                             const at::Tensor& initial_latents = at::Tensor());

// Decoder output in [-1, 1] [B, 3, H, W] -> uint8 [B, H, W, 3]:
// round(clamp(x / 2 + 0.5, 0, 1) * 255), as diffusers' numpy_to_pil.
at::Tensor images_to_uint8(const at::Tensor& images);

}  // namespace dinv::diffusion
