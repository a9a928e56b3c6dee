// `dinv pretrain`: train or fine-tune the generator itself (docs/method.md,
// "Pretraining the generator"). The UNet learns the diffusers text-to-image
// objective on a captioned corpus through the frozen text encoder; the VAE
// (AutoencoderKL) learns reconstruction + KL. Data-parallel over ranks through
// the bucketed gradient all-reduce of stage 3, AdamW with warm-up and cosine
// decay, gradient clipping, EMA of the weights, checkpoints and exact resume.
//
// Files (docs/architecture.md, "Pretraining"):
//   OUTPUT.work/model/           the diffusers folder being trained (the
//                                starting point: a preset with random weights
//                                or a copy of pretrain.init)
//   OUTPUT.work/<component>.ckpt weights, AdamW moments, EMA, step, losses
//   OUTPUT.work/<component>.done a finished phase (its losses)
//   OUTPUT/                      the finished folder (renamed from .work/model),
//                                with dinv_pretrain.json (settings, corpus, losses)
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "dinv/core/settings.h"
#include "dinv/sd/unet.h"
#include "dinv/sd/vae.h"

namespace dinv {
class Config;
class ConfigSchema;
}  // namespace dinv
namespace dinv::data {
class CaptionedDataset;
}
namespace dinv::diffusion {
class NoiseSchedule;
}
namespace dinv::dist {
class Communicator;
class World;
}  // namespace dinv::dist

namespace dinv::pretrain {

// What is trained: the UNet, the VAE, or both (the VAE first, then the UNet on its latents).
enum class Component { unet, vae, both };
inline const settings::Names<Component> kComponentNames{
    {{Component::unet, "unet"}, {Component::vae, "vae"}, {Component::both, "both"}}};

struct PretrainSettings {
  std::string init = "preset:tiny";  // "preset:NAME" (random weights) or a diffusers folder (fine-tuning)
  std::string output = "generator";
  Component component = Component::both;
  std::int64_t steps = 2000;      // UNet steps
  std::int64_t vae_steps = 1000;  // VAE steps
  std::int64_t batch_size = 32;   // global
  double lr = 1e-3, vae_lr = 1e-3;
  std::int64_t warmup_steps = 100;
  double weight_decay = 1e-2;
  double max_grad_norm = 1.0;  // 0: no clipping
  double ema_decay = 0.999;    // 0: no EMA (the last weights are saved)
  double caption_dropout = 0.1;
  double snr_gamma = 0;  // > 0: min-SNR loss weighting
  double kl_weight = 1e-6;
  bool cache_latents = true;
  std::int64_t checkpoint_every = 200;
  double bucket_mb = 25;
  std::uint64_t seed = 0;
  std::string progress = "auto";
  std::string corpus;  // derived: the corpus fingerprint, recorded by a run under way

  // The settings that change the trained weights, as "key = value" lines (a
  // resumed run must have the same; the finished folder records them).
  std::string output_text() const;
};

// The pretrain settings, declared once (core/settings.h): registration,
// reading, the recorded settings text and its resume check come from it.
const settings::Declaration<PretrainSettings>& pretrain_declaration();
void register_pretrain_options(ConfigSchema& schema);
PretrainSettings pretrain_settings(const Config& config);

// ---- objectives (exposed for the parity tests) -------------------------------

// The diffusers text-to-image loss: MSE between the UNet's prediction for
// add_noise(latents, noise, t) and the schedule's target (noise or velocity),
// optionally weighted per sample by min-SNR-gamma. `latents` are scaled.
at::Tensor unet_loss(sd::UNet2DConditionModel& unet, const diffusion::NoiseSchedule& schedule,
                     const at::Tensor& latents,    // [B, C, h, w]
                     const at::Tensor& noise,      // [B, C, h, w]
                     const at::Tensor& timesteps,  // [B] int64
                     const at::Tensor& cond,       // [B, T, D]
                     double snr_gamma);

// Reconstruction + KL of AutoencoderKL: mse(decode(mean + std * eps), images)
// + kl_weight * mean over the batch of KL(q(z|x) || N(0, I)) (summed over
// latent elements, as diffusers' DiagonalGaussianDistribution.kl()).
at::Tensor vae_loss(sd::AutoencoderKL& vae,
                    const at::Tensor& images,  // [B, 3, H, W] in [-1, 1]
                    const at::Tensor& eps,     // [B, C, H/f, W/f] posterior noise
                    double kl_weight);

// ---- the stage ------------------------------------------------------------------

struct PretrainOutcome {
  bool stopped = false;  // a signal stopped it; the checkpoint is written
  bool skipped = false;  // OUTPUT was already trained with these settings
  std::vector<std::string> phases_done;
  std::string output;
};

PretrainOutcome run_pretrain(dist::World& world, dist::Communicator& comm, const PretrainSettings& settings,
                             const data::CaptionedDataset& corpus);

}  // namespace dinv::pretrain
