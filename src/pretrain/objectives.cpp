// The two training objectives of `dinv pretrain`, written to match diffusers'
// examples/text_to_image/train_text_to_image.py (UNet) and the usual
// AutoencoderKL objective (VAE) term for term, so that one step's loss and
// gradients equal the reference's (tests/pretrain/test_pretrain_parity.py).
#include <ATen/ATen.h>

#include "dinv/diffusion/noise_schedule.h"
#include "dinv/pretrain/pretrain.h"

namespace dinv::pretrain {

namespace {

// SNR(t) = (sqrt(abar_t) / sqrt(1 - abar_t))^2, computed as diffusers'
// training_utils.compute_snr does (square roots first, in float32).
at::Tensor signal_to_noise(const diffusion::NoiseSchedule& schedule, const at::Tensor& timesteps) {
  const at::Tensor abar = schedule.alphas_cumprod().to(timesteps.device()).index_select(0, timesteps);
  const at::Tensor alpha = abar.sqrt(), sigma = (1.0 - abar).sqrt();
  return (alpha / sigma).pow(2);
}

}  // namespace

at::Tensor unet_loss(sd::UNet2DConditionModel& unet, const diffusion::NoiseSchedule& schedule,
                     const at::Tensor& latents, const at::Tensor& noise, const at::Tensor& timesteps,
                     const at::Tensor& cond, double snr_gamma) {
  const at::Tensor noisy = schedule.add_noise(latents, noise, timesteps);         // [B, C, h, w]
  const at::Tensor target = schedule.training_target(latents, noise, timesteps);  // [B, C, h, w]
  const at::Tensor pred = unet->forward(noisy, timesteps, cond).to(at::kFloat);   // [B, C, h, w]
  if (snr_gamma <= 0) return at::mse_loss(pred, target.to(at::kFloat));
  // Min-SNR-gamma (Hang et al. 2023): each sample's loss weighted by
  // min(SNR, gamma) / SNR for epsilon targets, / (SNR + 1) for velocity.
  const at::Tensor snr = signal_to_noise(schedule, timesteps);  // [B]
  at::Tensor weight = at::clamp_max(snr, snr_gamma);
  weight = schedule.prediction_type() == diffusion::PredictionType::v_prediction ? weight / (snr + 1) : weight / snr;
  const at::Tensor per_sample =
      at::mse_loss(pred, target.to(at::kFloat), at::Reduction::None).flatten(1).mean(1);  // [B]
  return (per_sample * weight).mean();
}

at::Tensor vae_loss(sd::AutoencoderKL& vae, const at::Tensor& images, const at::Tensor& eps, double kl_weight) {
  const sd::DiagonalGaussian posterior = vae->encode(images);  // [B, C, h, w] each
  const at::Tensor z = posterior.mean + posterior.std * eps;   // [B, C, h, w]
  const at::Tensor reconstruction = vae->decode(z);            // [B, 3, H, W]
  const at::Tensor rec = at::mse_loss(reconstruction.to(at::kFloat), images.to(at::kFloat));
  if (kl_weight == 0) return rec;
  // KL(N(mean, var) || N(0, 1)) summed over latent elements, mean over the batch.
  const at::Tensor kl =
      0.5 * (posterior.mean.pow(2) + posterior.logvar.exp() - 1.0 - posterior.logvar).sum({1, 2, 3});  // [B]
  return rec + kl_weight * kl.mean();
}

}  // namespace dinv::pretrain
