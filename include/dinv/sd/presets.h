// Model presets: the published Stable Diffusion configurations (SD 1.5, SD 2.1
// 768 v-prediction) and `tiny`, a miniature of SD 1.x for fast CPU runs and
// tests. `dinv model init --preset NAME OUT` writes a complete diffusers folder
// with random weights that diffusers itself loads.
//
// tiny: UNet block_out_channels (32, 64), layers_per_block 1, 2 attention
// heads, cross_attention_dim 32 (the text encoder's hidden size must be 32),
// norm_num_groups 8, sample_size 16; VAE (32, 64) with 4 latent channels
// (downsampling x2: 32x32 images <-> 16x16 latents), norm_num_groups 8.
// Configs for the embed / generate stages come from here (tiny_* below).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "dinv/io/json.h"

namespace dinv::sd {

// "tiny", "sd15", "sd21".
const std::vector<std::string>& preset_names();
// ConfigError naming the preset and the allowed names when unknown.
io::Json preset_unet_config(const std::string& preset);
io::Json preset_vae_config(const std::string& preset);
io::Json preset_scheduler_config(const std::string& preset);
// Token sequence length and embedding width the UNet expects for a preset
// (77 tokens; 32 / 768 / 1024).
std::int64_t preset_cross_attention_dim(const std::string& preset);

struct InitReport {
  std::vector<std::string> written;  // components written ("unet", "vae", "scheduler", ...)
};
// Write OUT/model_index.json, unet/, vae/, scheduler/, text_encoder/ and
// tokenizer/ with random weights drawn from `seed`. OUT is created; existing files in it are replaced.
// Without weights: the UNet and VAE configs, scheduler and model_index.json only (a
// skeleton to put converted weights into, or to compare architectures).
InitReport init_model_folder(const std::string& out, const std::string& preset, std::uint64_t seed = 0,
                             bool weights = true);

}  // namespace dinv::sd
