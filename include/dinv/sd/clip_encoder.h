// The transformer encoder that CLIP's text and vision towers share
// (transformers' CLIPEncoder: "encoder.layers.N.*"): pre-LayerNorm layers of
// self-attention and an MLP with quick_gelu / gelu / gelu_new. The text tower
// runs it with a causal mask, the vision tower without.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include "dinv/io/json.h"

namespace dinv::sd {

// The keys of CLIPTextConfig / CLIPVisionConfig that shape the encoder.
struct ClipEncoderConfig {
  std::int64_t hidden_size = 512;
  std::int64_t intermediate_size = 2048;
  std::int64_t num_hidden_layers = 12;
  std::int64_t num_attention_heads = 8;
  std::string hidden_act = "quick_gelu";  // quick_gelu | gelu | gelu_new
  double layer_norm_eps = 1e-5;

  // Those keys of a text or vision config object (`where` names the file),
  // absent keys keeping the values of `defaults`. ModelError naming the file
  // and the key for a value the encoder cannot be built from: non-positive or
  // oversized widths, heads not dividing the width, an unknown activation.
  static ClipEncoderConfig from_json(const io::Json& json, const std::string& where, const ClipEncoderConfig& defaults);
};

// ModelError "WHERE: key 'KEY': ..." unless 0 < value <= limit.
void check_config_size(const std::string& where, const char* key, std::int64_t value, std::int64_t limit);

class ClipAttentionImpl : public torch::nn::Module {
 public:
  ClipAttentionImpl(const ClipEncoderConfig& config, bool causal);
  at::Tensor forward(const at::Tensor& x);  // [B, T, D] -> [B, T, D]

 private:
  std::int64_t heads_;
  bool causal_;
  torch::nn::Linear q_proj_{nullptr}, k_proj_{nullptr}, v_proj_{nullptr}, out_proj_{nullptr};
};
TORCH_MODULE(ClipAttention);

class ClipMlpImpl : public torch::nn::Module {
 public:
  explicit ClipMlpImpl(const ClipEncoderConfig& config);
  at::Tensor forward(const at::Tensor& x);  // [B, T, D] -> [B, T, D]

 private:
  enum class Activation { quick_gelu, gelu, gelu_new } activation_;  // hidden_act, parsed once
  torch::nn::Linear fc1_{nullptr}, fc2_{nullptr};
};
TORCH_MODULE(ClipMlp);

class ClipEncoderLayerImpl : public torch::nn::Module {
 public:
  ClipEncoderLayerImpl(const ClipEncoderConfig& config, bool causal);
  at::Tensor forward(const at::Tensor& x);  // [B, T, D] -> [B, T, D]

 private:
  torch::nn::LayerNorm layer_norm1_{nullptr}, layer_norm2_{nullptr};
  ClipAttention self_attn_{nullptr};
  ClipMlp mlp_{nullptr};
};
TORCH_MODULE(ClipEncoderLayer);

// transformers' CLIPEncoder: `layers` applied in turn.
class ClipEncoderImpl : public torch::nn::Module {
 public:
  ClipEncoderImpl(const ClipEncoderConfig& config, bool causal);
  // x: [B, T, D]; returns the last layer's output [B, T, D]. With
  // `hidden_states`, appends x and then every layer's output, as transformers'
  // output_hidden_states.
  at::Tensor forward(const at::Tensor& x, std::vector<at::Tensor>* hidden_states = nullptr);

 private:
  torch::nn::ModuleList layers_{nullptr};
};
TORCH_MODULE(ClipEncoder);

}  // namespace dinv::sd
