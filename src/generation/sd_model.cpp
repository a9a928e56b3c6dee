#include "dinv/generation/sd_model.h"

#include <ATen/ATen.h>

#include "dinv/diffusion/sampling.h"

namespace dinv::generation {

GenerationModel make_generation_model(std::shared_ptr<sd::Pipeline> p, const GenerateSettings& s,
                                      const diffusion::SamplerOptions& sampler) {
  const auto config = diffusion::SchedulerConfig::from_file(p->dir + "/scheduler/scheduler_config.json");
  // One scheduler per call: samplers keep per-run state (multistep history).
  auto make = [config, sampler] { return diffusion::make_scheduler(config, sampler); };
  const std::string name = make()->name();

  diffusion::SamplingOptions o;
  o.steps = s.steps;
  o.guidance = s.guidance;
  o.seed = s.seed;
  o.vae_scale_factor = p->vae->config().downsampling_factor();
  o.height = o.width = s.sampling_resolution;
  o.latent_channels = p->unet->config().in_channels;
  o.latent_scaling = p->vae->config().scaling_factor;
  o.cross_attention_dim = p->unet->config().cross_attention_dim.front();
  const double shift = p->vae->config().shift_factor.value_or(0.0);

  GenerationModel m;
  m.fingerprint = p->fingerprint;
  m.sampler_name = name;
  m.sample_seed = [seed = s.seed](std::int64_t index) { return diffusion::sample_seed(seed, index); };
  m.sample = [p, o, make, shift](const at::Tensor& cond, const at::Tensor& uncond, std::int64_t first_index) {
    at::InferenceMode guard;
    auto options = o;
    options.first_sample_index = first_index;
    diffusion::Denoiser denoiser = [&](const at::Tensor& x, const at::Tensor& t, const at::Tensor& c) {
      return p->unet->forward(x.to(p->dtype), t, c.to(p->dtype)).to(at::kFloat);
    };
    diffusion::Decoder decoder = [&](const at::Tensor& z) {
      return p->vae->decode((z + shift).to(p->dtype)).to(at::kFloat);
    };
    auto scheduler = make();
    return diffusion::sample_guided(denoiser, decoder, *scheduler, cond.to(p->device), uncond.to(p->device), options)
        .images;
  };
  m.encode_prompts = [p](const std::vector<std::string>& prompts) {
    at::InferenceMode guard;
    return p->encode_prompts(prompts).to(at::kFloat);
  };
  return m;
}

}  // namespace dinv::generation
