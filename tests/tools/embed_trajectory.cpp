// Test driver for stage 1's trajectory parity with a diffusers reference:
// runs the unit trainer on one group of a real model folder with the
// randomness given in a file (posterior noise, noise, timesteps per step) and
// writes the embeddings after the last step and every step's loss.
//   dinv_embed_trajectory MODEL_DIR INPUTS.safetensors OUT.safetensors BATCH STEPS LR WEIGHT_DECAY
// INPUTS: mean, std [n, C, h, w]; init [n, T, D]; eps.<s>, noise.<s> [b, C, h, w]; t.<s> [b] for s < STEPS.
#include <iostream>
#include <string>

#include <ATen/ATen.h>

#include "dinv/core/error.h"
#include "dinv/inversion/sd_model.h"
#include "dinv/inversion/unit_trainer.h"
#include "dinv/io/safetensors.h"

using namespace dinv;

int main(int argc, char** argv) {
  if (argc != 8) {
    std::cerr << "usage: dinv_embed_trajectory MODEL_DIR INPUTS OUT BATCH STEPS LR WEIGHT_DECAY\n";
    return 2;
  }
  try {
    at::set_num_threads(1);
    const auto in = io::read_safetensors(argv[2]);
    const at::Tensor init = in.at("init");
    inversion::EmbedSettings s;
    s.num_tokens = init.size(1);
    s.group_size = init.size(0);
    s.batch_size = std::stoll(argv[4]);
    s.steps = std::stoll(argv[5]);
    s.adam.lr = std::stod(argv[6]);
    s.adam.weight_decay = std::stod(argv[7]);
    const auto model = inversion::make_frozen_model(sd::load_pipeline(argv[1], at::kCPU, at::kFloat));
    inversion::UnitTrainer trainer(model, s, inversion::plan_units(s.group_size, s.group_size, 1)[0],
                                   {in.at("mean"), in.at("std")}, at::kCPU);
    trainer.set_embeddings(init);
    std::vector<double> losses;
    for (std::int64_t step = 0; step < s.steps; ++step) {
      const auto k = std::to_string(step);
      losses.push_back(trainer.step_with({{in.at("eps." + k), in.at("noise." + k), in.at("t." + k)}}));
    }
    io::write_safetensors(argv[3], {{"embeddings", trainer.embeddings()}, {"losses", at::tensor(losses, at::kDouble)}});
  } catch (const Error& e) {
    std::cerr << "dinv_embed_trajectory: " << e.what() << std::endl;
    return 1;
  }
  return 0;
}
