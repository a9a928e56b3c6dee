// Drives dinv's Stable Diffusion models from pytest where the CLI has no verb.
//   dinv_sd_tool unet-grad DIR IN OUT
//     IN: sample, timestep, encoder_hidden_states, weight (shaped like the
//     output). Writes OUT: grad = d sum(unet(...) * weight) / d encoder_hidden_states
//     (UNet parameters frozen), and sample (the output).
#include <iostream>

#include <ATen/ATen.h>

#include "dinv/core/error.h"
#include "dinv/io/safetensors.h"
#include "dinv/sd/loader.h"

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
    std::cerr << "usage: dinv_sd_tool unet-grad DIR IN OUT\n";
    return 2;
  } catch (const dinv::Error& e) {
    std::cerr << e.what() << "\n";
    return 1;
  }
}
