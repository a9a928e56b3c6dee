// Stable Diffusion in the diffusers folder layout:
//
//   DIR/model_index.json                 pipeline class and its components
//   DIR/unet/config.json                 + diffusion_pytorch_model[.VARIANT].safetensors
//   DIR/vae/config.json                  (or sharded: *.safetensors.index[.VARIANT].json)
//   DIR/text_encoder/config.json         + model[.VARIANT].safetensors (transformers naming)
//   DIR/tokenizer/, DIR/scheduler/scheduler_config.json
//
// Weights are read by name into a module built from the component's config:
// missing, unexpected, wrong-shape and wrong-dtype tensors are ModelErrors
// naming the file and the tensor, expected against found. Each tensor is read
// from the file straight into its parameter (no second copy of the weights).
// Pickle checkpoints (.bin, .ckpt, .pt, .pth) are refused, never unpickled.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include "dinv/io/json.h"
#include "dinv/sd/unet.h"
#include "dinv/sd/vae.h"

namespace dinv::sd {

struct ModelIndex {
  std::string class_name;  // "StableDiffusionPipeline"
  // component -> (library, class), e.g. "unet" -> ("diffusers", "UNet2DConditionModel");
  // components listed as [null, null] are left out.
  std::map<std::string, std::pair<std::string, std::string>> components;
  io::Json json;
};
// DIR/model_index.json; ModelError naming the file when absent or malformed.
ModelIndex read_model_index(const std::string& dir);

// The files of one component folder.
struct ComponentFiles {
  std::string name;                  // "unet"
  std::string dir;                   // DIR/unet
  std::string config;                // DIR/unet/config.json
  std::vector<std::string> weights;  // one file, or the shards of an index
  std::string index;                 // the shard index, if sharded
  std::string variant;               // "" or "fp16", ...
};

// Locate a component's config and safetensors weights. `basenames` are tried
// in order: diffusers models use "diffusion_pytorch_model", transformers models
// "model". With a variant, only DIR/NAME/BASENAME.VARIANT.safetensors (or its
// sharded index) is accepted; without, the plain file, or the only variant
// present. Pickle files are refused with a message naming the safetensors file
// to use instead.
ComponentFiles find_component(const std::string& dir, const std::string& component, const std::string& variant = "",
                              const std::vector<std::string>& basenames = {"diffusion_pytorch_model", "model"});

struct LoadOptions {
  at::Device device = at::kCPU;
  at::ScalarType dtype = at::kFloat;  // floating parameters are stored in this dtype
  std::string variant;                // "fp16" reads *.fp16.safetensors
  // Refuse floating tensors whose dtype differs from `dtype` instead of
  // converting them (files must hold exactly the model's dtype).
  bool strict_dtype = false;
  // Run the loaded model channels-last (see set_memory_format). Off by
  // default: on the CPU it measured slower than NCHW (bench/RESULTS.md); it
  // may pay off for fp16 convolutions on GPUs. Converting after loading makes
  // a second copy of the convolution weights.
  bool channels_last = false;
};

struct LoadStats {
  std::int64_t tensors = 0;
  std::uint64_t bytes = 0;  // bytes read from the files
};

// Fill every parameter and buffer of `module` from `files` by name. Every
// problem is collected and reported at once (ModelError).
LoadStats load_weights(torch::nn::Module& module, const std::vector<std::string>& files,
                       const LoadOptions& options = {});

// The checks of load_weights without reading any data (the module may live on
// the meta device): ModelError listing every problem.
void check_weights(torch::nn::Module& module, const std::vector<std::string>& files, const LoadOptions& options = {});

// Build from DIR/<component>/config.json and load the weights; parameters are
// frozen (requires_grad false) and the module is in eval mode.
UNet2DConditionModel load_unet(const std::string& dir, const LoadOptions& options = {},
                               const std::string& component = "unet");
AutoencoderKL load_vae(const std::string& dir, const LoadOptions& options = {}, const std::string& component = "vae");

// ---- fingerprints ---------------------------------------------------------------
//
// component: sha256 over "dinv-component-v1", the canonical config JSON
// (sorted keys, no whitespace; diffusers bookkeeping keys such as
// _diffusers_version and _name_or_path left out, _class_name kept) and, for every tensor of the weight files in
// name order, its name, dtype, shape and bytes (weights: io::weight_hash_update,
// "dinv-wh1"). The result does not depend on how the weights are split into
// files or ordered within them. Folders without weights (scheduler,
// tokenizer) hash every file, JSON files in canonical form.
// model: sha256 over the component names and component fingerprints, in name order.
struct ComponentFingerprint {
  std::string config_sha256;   // canonical config JSON
  std::string weights_sha256;  // "" for components without weights
  std::string fingerprint;     // both together
};
ComponentFingerprint fingerprint_component(const ComponentFiles& files);
ComponentFingerprint fingerprint_folder(const std::string& component_dir);
// Every component of model_index.json that has a folder (weights read with
// `variant`); "sha256:<hex>".
std::string model_fingerprint(const std::string& dir, const std::string& variant = "");

}  // namespace dinv::sd
