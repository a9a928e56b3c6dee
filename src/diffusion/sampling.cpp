// The guided sampling loop. Every sample owns a CPU generator seeded from
// (seed, global sample index); its initial latents and each step's noise are
// drawn from it in a fixed order, so results do not depend on how samples are
// batched or spread over ranks.
#include "dinv/diffusion/sampling.h"

#include <cmath>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include "dinv/core/error.h"

namespace dinv::diffusion {

namespace {

std::string shape_of(const at::Tensor& t) {
  std::string s = "[";
  for (std::int64_t d = 0; d < t.dim(); ++d) s += (d ? ", " : "") + std::to_string(t.size(d));
  return s + "]";
}

void check_options(const SamplingOptions& o) {
  if (!std::isfinite(o.guidance) || o.guidance < 0)
    throw ConfigError("guidance scale " + std::to_string(o.guidance) +
                      " is not allowed (allowed: a finite value >= 0)");
  if (o.vae_scale_factor < 1)
    throw ConfigError("VAE scale factor " + std::to_string(o.vae_scale_factor) + " must be >= 1");
  for (auto [name, v] : {std::pair{"height", o.height}, std::pair{"width", o.width}})
    if (v < o.vae_scale_factor || v % o.vae_scale_factor != 0)
      throw ConfigError(std::string("sampling ") + name + " " + std::to_string(v) +
                        " is not allowed (allowed: a positive multiple of the VAE factor " +
                        std::to_string(o.vae_scale_factor) + ")");
}

// uncond broadcast to cond's batch, after checking both shapes.
at::Tensor check_conditioning(const at::Tensor& cond, const at::Tensor& uncond, const SamplingOptions& o) {
  if (!cond.defined() || cond.dim() != 3 || cond.size(0) < 1)
    throw Error("conditioning must be [B, T, D] with B >= 1, got " + (cond.defined() ? shape_of(cond) : "none"));
  if (o.cross_attention_dim > 0 && cond.size(2) != o.cross_attention_dim)
    throw ModelError("conditioning width " + std::to_string(cond.size(2)) + " does not match the denoiser's " +
                     "cross_attention_dim " + std::to_string(o.cross_attention_dim));
  if (!uncond.defined() || uncond.dim() != 3 || uncond.size(1) != cond.size(1) || uncond.size(2) != cond.size(2))
    throw Error("unconditional conditioning " + (uncond.defined() ? shape_of(uncond) : std::string("none")) +
                " must be [1, T, D] or [B, T, D] with T, D of the conditioning " + shape_of(cond));
  if (uncond.size(0) != 1 && uncond.size(0) != cond.size(0))
    throw Error("unconditional conditioning batch " + std::to_string(uncond.size(0)) +
                " does not match the conditioning batch " + std::to_string(cond.size(0)) + " (allowed: 1 or " +
                std::to_string(cond.size(0)) + ")");
  return uncond.to(cond.device(), cond.scalar_type()).expand_as(cond);
}

// One standard normal draw of `shape` per sample, stacked along the batch.
at::Tensor draw_per_sample(std::vector<at::Generator>& generators, at::IntArrayRef shape, const at::Device& device) {
  std::vector<at::Tensor> draws;
  draws.reserve(generators.size());
  for (auto& g : generators) draws.push_back(at::randn(shape, g, at::TensorOptions().dtype(at::kFloat)));
  return at::cat(draws).to(device);
}

}  // namespace

std::uint64_t sample_seed(std::uint64_t seed, std::int64_t index) {
  // Two rounds of splitmix64: well-mixed and stable across platforms.
  auto mix = [](std::uint64_t z) {
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  };
  return mix(mix(seed) ^ static_cast<std::uint64_t>(index));
}

at::Tensor images_to_uint8(const at::Tensor& images) {
  if (images.dim() != 4 || images.size(1) != 3)
    throw ModelError("decoder output must be [B, 3, H, W], got " + shape_of(images));
  auto x = (images.to(at::kFloat) / 2 + 0.5).clamp(0, 1);
  return (x.permute({0, 2, 3, 1}) * 255).round().to(at::kByte).contiguous();
}

SamplingResult sample_guided(const Denoiser& denoiser, const Decoder& decoder, Scheduler& scheduler,
                             const at::Tensor& cond, const at::Tensor& uncond, const SamplingOptions& options,
                             const at::Tensor& initial_latents) {
  check_options(options);
  const at::Tensor uncond_b = check_conditioning(cond, uncond, options);
  scheduler.set_timesteps(options.steps);
  const std::int64_t batch = cond.size(0);
  const std::vector<std::int64_t> one = {1, options.latent_channels, options.height / options.vae_scale_factor,
                                         options.width / options.vae_scale_factor};
  std::vector<at::Generator> generators;
  for (std::int64_t b = 0; b < batch; ++b)
    generators.push_back(
        at::make_generator<at::CPUGeneratorImpl>(sample_seed(options.seed, options.first_sample_index + b)));

  at::Tensor x;
  if (initial_latents.defined()) {
    const std::vector<std::int64_t> want = {batch, one[1], one[2], one[3]};
    if (!initial_latents.sizes().equals(want))
      throw Error("initial latents " + shape_of(initial_latents) + " must be [" + std::to_string(batch) + ", " +
                  std::to_string(one[1]) + ", " + std::to_string(one[2]) + ", " + std::to_string(one[3]) + "]");
    x = initial_latents.to(cond.device(), at::kFloat);
  } else {
    x = draw_per_sample(generators, one, cond.device());
  }
  x = x * scheduler.init_noise_sigma();

  const at::Tensor cond_both = at::cat({uncond_b, cond});  // diffusers' order: [uncond; cond]
  const at::Tensor timesteps = scheduler.timesteps();
  for (std::int64_t i = 0; i < timesteps.size(0); ++i) {
    const at::Tensor model_in = scheduler.scale_model_input(x, i);
    const at::Tensor t = timesteps[i].expand({2 * batch}).to(cond.device());
    const at::Tensor out = denoiser(at::cat({model_in, model_in}), t, cond_both).to(at::kFloat);
    if (out.size(0) != 2 * batch)
      throw ModelError("denoiser returned " + shape_of(out) + " for a batch of " + std::to_string(2 * batch));
    const auto halves = out.chunk(2);
    const at::Tensor guided = halves[0] + options.guidance * (halves[1] - halves[0]);
    const at::Tensor noise = scheduler.needs_noise(i) ? draw_per_sample(generators, one, cond.device()) : at::Tensor();
    x = scheduler.step(guided, i, x, noise);
  }

  SamplingResult result{x, at::Tensor()};
  if (decoder) result.images = images_to_uint8(decoder(x / options.latent_scaling));
  return result;
}

}  // namespace dinv::diffusion
