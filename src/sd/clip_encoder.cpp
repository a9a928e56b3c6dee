#include "dinv/sd/clip_encoder.h"

#include <ATen/ATen.h>

#include "config_reader.h"
#include "dinv/core/error.h"

namespace dinv::sd {
namespace {

at::Tensor quick_gelu(const at::Tensor& x) { return x * at::sigmoid(1.702 * x); }

torch::nn::LayerNorm layer_norm(const ClipEncoderConfig& c) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.hidden_size}).eps(c.layer_norm_eps));
}

}  // namespace

void check_config_size(const std::string& where, const char* key, std::int64_t value, std::int64_t limit) {
  if (value <= 0)
    throw ModelError(where + ": key '" + key + "': expected a positive integer, found " + std::to_string(value));
  if (value > limit)
    throw ModelError(where + ": key '" + key + "': " + std::to_string(value) + " is more than dinv's limit of " +
                     std::to_string(limit));
}

ClipEncoderConfig ClipEncoderConfig::from_json(const io::Json& json, const std::string& where,
                                               const ClipEncoderConfig& defaults) {
  using detail::between;
  using detail::field;
  using C = ClipEncoderConfig;
  // Caps: sizes become tensor shapes (CLIP ViT-L/14 vision: width 1024, 24
  // layers; OpenCLIP ViT-bigG: width 1664, 48 layers).
  static const std::vector<detail::Field<C>> fields{
      field("hidden_size", &C::hidden_size, between{1, 16384}),
      field("intermediate_size", &C::intermediate_size, between{1, 65536}),
      field("num_hidden_layers", &C::num_hidden_layers, between{1, 256}),
      field("num_attention_heads", &C::num_attention_heads, between{1, 16384}),
      field("hidden_act", &C::hidden_act, detail::one_of{{"quick_gelu", "gelu", "gelu_new"}}),
      field("layer_norm_eps", &C::layer_norm_eps),
  };
  const detail::ConfigReader r(json, where);
  ClipEncoderConfig c = defaults;
  detail::read_fields(r, c, fields);
  if (c.hidden_size % c.num_attention_heads != 0)
    r.fail("num_attention_heads", io::Json(c.num_attention_heads),
           "must divide hidden_size (" + std::to_string(c.hidden_size) + ")");
  return c;
}

ClipAttentionImpl::ClipAttentionImpl(const ClipEncoderConfig& c, bool causal)
    : heads_(c.num_attention_heads), causal_(causal) {
  q_proj_ = register_module("q_proj", torch::nn::Linear(c.hidden_size, c.hidden_size));
  k_proj_ = register_module("k_proj", torch::nn::Linear(c.hidden_size, c.hidden_size));
  v_proj_ = register_module("v_proj", torch::nn::Linear(c.hidden_size, c.hidden_size));
  out_proj_ = register_module("out_proj", torch::nn::Linear(c.hidden_size, c.hidden_size));
}

at::Tensor ClipAttentionImpl::forward(const at::Tensor& x) {
  const auto b = x.size(0), t = x.size(1), d = x.size(2);
  // [B, T, D] -> [B, heads, T, D / heads]
  auto heads = [&](const at::Tensor& y) { return y.view({b, t, heads_, d / heads_}).transpose(1, 2); };
  // SDPA scales by 1/sqrt(head_dim), as CLIP does; with the causal mask (text)
  // each token sees only itself and the tokens before it.
  at::Tensor o =
      at::scaled_dot_product_attention(heads(q_proj_(x)), heads(k_proj_(x)), heads(v_proj_(x)), {}, 0.0, causal_);
  return out_proj_(o.transpose(1, 2).reshape({b, t, d}));
}

ClipMlpImpl::ClipMlpImpl(const ClipEncoderConfig& c)
    : activation_(c.hidden_act == "quick_gelu" ? Activation::quick_gelu
                  : c.hidden_act == "gelu"     ? Activation::gelu
                                               : Activation::gelu_new) {
  fc1_ = register_module("fc1", torch::nn::Linear(c.hidden_size, c.intermediate_size));
  fc2_ = register_module("fc2", torch::nn::Linear(c.intermediate_size, c.hidden_size));
}

at::Tensor ClipMlpImpl::forward(const at::Tensor& x) {
  at::Tensor h = fc1_(x);  // [B, T, intermediate]
  switch (activation_) {
    case Activation::quick_gelu:
      h = quick_gelu(h);
      break;
    case Activation::gelu:
      h = at::gelu(h);
      break;
    case Activation::gelu_new:
      h = at::gelu(h, "tanh");
      break;
  }
  return fc2_(h);
}

ClipEncoderLayerImpl::ClipEncoderLayerImpl(const ClipEncoderConfig& c, bool causal) {
  self_attn_ = register_module("self_attn", ClipAttention(c, causal));
  layer_norm1_ = register_module("layer_norm1", layer_norm(c));
  mlp_ = register_module("mlp", ClipMlp(c));
  layer_norm2_ = register_module("layer_norm2", layer_norm(c));
}

at::Tensor ClipEncoderLayerImpl::forward(const at::Tensor& x) {
  at::Tensor h = x + self_attn_(layer_norm1_(x));
  return h + mlp_(layer_norm2_(h));
}

ClipEncoderImpl::ClipEncoderImpl(const ClipEncoderConfig& c, bool causal) {
  layers_ = register_module("layers", torch::nn::ModuleList());
  for (std::int64_t i = 0; i < c.num_hidden_layers; ++i) layers_->push_back(ClipEncoderLayer(c, causal));
}

at::Tensor ClipEncoderImpl::forward(const at::Tensor& x, std::vector<at::Tensor>* hidden_states) {
  at::Tensor h = x;
  if (hidden_states) hidden_states->push_back(h);
  for (const auto& layer : *layers_) {
    h = layer->as<ClipEncoderLayer>()->forward(h);
    if (hidden_states) hidden_states->push_back(h);
  }
  return h;
}

}  // namespace dinv::sd
