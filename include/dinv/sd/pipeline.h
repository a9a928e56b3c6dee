// A Stable Diffusion folder loaded for the stages: frozen UNet and VAE (and,
// on demand, the tokenizer and text encoder) on one device in one dtype, with
// the folder's fingerprint. Shared by `dinv embed` and `dinv generate`.
#pragma once

#include <memory>
#include <string>

#include <c10/core/Device.h>

#include "dinv/sd/clip_text.h"
#include "dinv/sd/tokenizer.h"
#include "dinv/sd/unet.h"
#include "dinv/sd/vae.h"

namespace dinv::sd {

struct Pipeline {
  std::string dir;
  std::string fingerprint;  // model_fingerprint(dir)
  c10::Device device{c10::kCPU};
  at::ScalarType dtype = at::kFloat;
  UNet2DConditionModel unet{nullptr};
  AutoencoderKL vae{nullptr};
  // Loaded by text() the first time prompts are encoded.
  std::shared_ptr<ClipTokenizer> tokenizer;
  ClipTextModel text_encoder{nullptr};

  // Conditioning [B, 77, D] of prompts (tokenizer and text encoder loaded once).
  at::Tensor encode_prompts(const std::vector<std::string>& prompts, TextLayer layer = TextLayer::last);
  std::string describe() const;
};

// "fp32" | "fp16" | "bf16" -> dtype; half precision only on CUDA (ConfigError
// naming `key` otherwise).
at::ScalarType stage_dtype(const std::string& name, c10::Device device, const std::string& key);

// Load DIR's UNet and VAE (frozen, eval mode) on `device` in `dtype`.
std::shared_ptr<Pipeline> load_pipeline(const std::string& dir, c10::Device device, at::ScalarType dtype);

}  // namespace dinv::sd
