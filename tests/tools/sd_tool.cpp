// Drives dinv's Stable Diffusion models from pytest where the CLI has no verb.
//   dinv_sd_tool unet-grad DIR IN OUT
//     IN: sample, timestep, encoder_hidden_states, weight (shaped like the
//     output). Writes OUT: grad = d sum(unet(...) * weight) / d encoder_hidden_states
//     (UNet parameters frozen), and sample (the output).
//   dinv_sd_tool unet-train-step DIR IN OUT SNR_GAMMA
//     IN: latents (scaled), noise, timesteps, cond. OUT: loss and grad/<name>
//     for every UNet parameter (pretrain::unet_loss, DIR/scheduler's schedule).
//   dinv_sd_tool vae-train-step DIR IN OUT KL_WEIGHT
//     IN: images in [-1, 1], eps (posterior noise). OUT: loss and grad/<name>.
#include <iostream>

#include <ATen/ATen.h>

#include "dinv/core/error.h"
#include "dinv/io/safetensors.h"
#include "dinv/diffusion/noise_schedule.h"
#include "dinv/pretrain/pretrain.h"
#include "dinv/sd/loader.h"

namespace {

// Train mode, parameters trainable: as `dinv pretrain` sets its component up.
template <class Module>
void make_trainable(Module& m) {
  m->train();
  for (auto& p : m->parameters()) p.set_requires_grad(true);
}

void write_loss_and_grads(const std::string& path, const at::Tensor& loss, torch::nn::Module& m) {
  std::map<std::string, at::Tensor> out{{"loss", loss.detach().reshape({1})}};
  for (const auto& p : m.named_parameters(true))
    if (p.value().grad().defined()) out.emplace("grad/" + p.key(), p.value().grad());
  dinv::io::write_safetensors(path, out);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const std::string cmd = argc > 1 ? argv[1] : "";
    if (cmd == "unet-grad" && argc == 5) {
      auto unet = dinv::sd::load_unet(argv[2]);
      auto in = dinv::io::read_safetensors(argv[3]);
      auto ctx = in.at("encoder_hidden_states").clone().set_requires_grad(true);
      auto out = unet->forward(in.at("sample"), in.at("timestep"), ctx);
      (out * in.at("weight")).sum().backward();
      for (const auto& p : unet->parameters())
        if (p.grad().defined()) throw dinv::Error("a UNet parameter received a gradient");
      dinv::io::write_safetensors(argv[4], {{"grad", ctx.grad()}, {"sample", out.detach()}});
      return 0;
    }
    if (cmd == "unet-train-step" && argc == 6) {
      auto unet = dinv::sd::load_unet(argv[2]);
      make_trainable(unet);
      const dinv::diffusion::NoiseSchedule schedule(
          dinv::diffusion::SchedulerConfig::from_file(std::string(argv[2]) + "/scheduler/scheduler_config.json"));
      auto in = dinv::io::read_safetensors(argv[3]);
      const at::Tensor loss = dinv::pretrain::unet_loss(unet, schedule, in.at("latents"), in.at("noise"),
                                                        in.at("timesteps"), in.at("cond"), std::stod(argv[5]));
      loss.backward();
      write_loss_and_grads(argv[4], loss, *unet);
      return 0;
    }
    if (cmd == "vae-train-step" && argc == 6) {
      auto vae = dinv::sd::load_vae(argv[2]);
      make_trainable(vae);
      auto in = dinv::io::read_safetensors(argv[3]);
      const at::Tensor loss = dinv::pretrain::vae_loss(vae, in.at("images"), in.at("eps"), std::stod(argv[5]));
      loss.backward();
      write_loss_and_grads(argv[4], loss, *vae);
      return 0;
    }
    std::cerr << "usage: dinv_sd_tool unet-grad DIR IN OUT\n"
                 "       dinv_sd_tool unet-train-step DIR IN OUT SNR_GAMMA\n"
                 "       dinv_sd_tool vae-train-step DIR IN OUT KL_WEIGHT\n";
    return 2;
  } catch (const dinv::Error& e) {
    std::cerr << e.what() << "\n";
    return 1;
  }
}
