// Building blocks of the Stable Diffusion UNet and VAE, with the parameter
// names of diffusers (`to_q.weight`, `norm1.bias`, `ff.net.0.proj.weight`...),
// so that a module's named_parameters() are exactly the names in the
// diffusers safetensors files.
//
// The primitive layers (Linear, Conv2d, GroupNorm, LayerNorm) allocate their
// parameters uninitialised: loading weights overwrites them, and
// `init_random` fills them for new models (`dinv model init`, tests). That
// avoids initialising ~1 GB of parameters only to overwrite them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/pimpl.h>

namespace dinv::sd {

// Activation functions of diffusers' get_activation.
enum class Activation { silu, gelu, mish, relu };
// "silu"/"swish", "gelu", "mish", "relu"; nullopt for anything else.
std::optional<Activation> activation_from_name(const std::string& name);
// The names activation_from_name accepts, quoted, for error messages.
std::string activation_names();
at::Tensor activate(const at::Tensor& x, Activation act);

// ---- primitive layers ------------------------------------------------------

class LinearImpl : public torch::nn::Module {
 public:
  LinearImpl(std::int64_t in, std::int64_t out, bool bias, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& x) const;
  void init_random(at::Generator& gen);
  std::int64_t in_features, out_features;
  at::Tensor weight, bias;
};
TORCH_MODULE(Linear);

class Conv2dImpl : public torch::nn::Module {
 public:
  Conv2dImpl(std::int64_t in, std::int64_t out, std::int64_t kernel, std::int64_t stride, std::int64_t padding,
             const at::TensorOptions& options, bool bias = true);
  at::Tensor forward(const at::Tensor& x) const;
  void init_random(at::Generator& gen);
  std::int64_t in_channels, out_channels, kernel, stride, padding;
  at::Tensor weight, bias;
};
TORCH_MODULE(Conv2d);

class GroupNormImpl : public torch::nn::Module {
 public:
  GroupNormImpl(std::int64_t groups, std::int64_t channels, double eps, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& x) const;
  void init_random(at::Generator& gen);
  std::int64_t groups, channels;
  double eps;
  at::Tensor weight, bias;
};
TORCH_MODULE(GroupNorm);

class LayerNormImpl : public torch::nn::Module {
 public:
  LayerNormImpl(std::int64_t dim, double eps, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& x) const;
  void init_random(at::Generator& gen);
  std::int64_t dim;
  double eps;
  at::Tensor weight, bias;
};
TORCH_MODULE(LayerNorm);

// Random parameters for every primitive layer under `module`: weights and
// biases uniform in +-1/sqrt(fan_in) (PyTorch's default scale), norm scales
// 1 +- 0.1 and shifts +-0.1 (so that tests exercise them). Deterministic for a
// given seed.
void init_random(torch::nn::Module& module, std::uint64_t seed);

// ---- composite blocks (diffusers classes of the same name) -----------------

struct ResnetOptions {
  std::int64_t in_channels = 0, out_channels = 0;
  std::int64_t temb_channels = 0;            // 0: no time embedding (VAE)
  std::int64_t groups = 32, groups_out = 0;  // groups_out 0: same as groups
  double eps = 1e-6;
  Activation act = Activation::silu;
  double output_scale_factor = 1.0;
  bool scale_shift = false;  // resnet_time_scale_shift == "scale_shift"
  bool skip_time_act = false;
};

class ResnetBlock2DImpl : public torch::nn::Module {
 public:
  ResnetBlock2DImpl(const ResnetOptions& o, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& temb) const;  // temb may be undefined

 private:
  ResnetOptions o_;
  GroupNorm norm1{nullptr}, norm2{nullptr};
  Conv2d conv1{nullptr}, conv2{nullptr}, conv_shortcut{nullptr};
  Linear time_emb_proj{nullptr};
};
TORCH_MODULE(ResnetBlock2D);

// Downsample2D(use_conv=True, name="op"): a stride-2 3x3 convolution. With
// padding 0 (the VAE) the input is first padded by one on the right and bottom.
class Downsample2DImpl : public torch::nn::Module {
 public:
  Downsample2DImpl(std::int64_t channels, std::int64_t padding, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& x) const;

 private:
  std::int64_t padding_;
  Conv2d conv{nullptr};
};
TORCH_MODULE(Downsample2D);

// Upsample2D(use_conv=True): nearest x2 (or to `size`), then a 3x3 convolution.
class Upsample2DImpl : public torch::nn::Module {
 public:
  Upsample2DImpl(std::int64_t channels, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& x, at::OptionalIntArrayRef size = std::nullopt) const;

 private:
  Conv2d conv{nullptr};
};
TORCH_MODULE(Upsample2D);

struct AttentionOptions {
  std::int64_t query_dim = 0;
  std::int64_t cross_attention_dim = 0;  // 0: self-attention (keys from the query input)
  std::int64_t heads = 1, dim_head = 64;
  bool bias = false;    // to_q/to_k/to_v biases
  bool upcast = false;  // upcast_attention: attention in fp32 for fp16/bf16 models
  // The VAE's attention block: group norm on the input, 4-D input, residual.
  std::int64_t norm_groups = 0;
  double norm_eps = 1e-5;
  bool residual_connection = false;
  double rescale_output_factor = 1.0;
};

// diffusers' Attention with AttnProcessor2_0: at::scaled_dot_product_attention.
class AttentionImpl : public torch::nn::Module {
 public:
  AttentionImpl(const AttentionOptions& o, const at::TensorOptions& options);
  // x: [B, N, C] (or [B, C, H, W] for the VAE block); context: [B, T, D] or undefined.
  at::Tensor forward(const at::Tensor& x, const at::Tensor& context = {}) const;

 private:
  AttentionOptions o_;
  GroupNorm group_norm{nullptr};
  Linear to_q{nullptr}, to_k{nullptr}, to_v{nullptr};
  torch::nn::ModuleList to_out;
  Linear out_proj_{nullptr};
};
TORCH_MODULE(Attention);

// FeedForward with GEGLU: net.0 = GEGLU(dim, 4*dim) (net.0.proj: dim -> 8*dim),
// net.1 = dropout (no parameters), net.2 = Linear(4*dim, dim).
class GEGLUImpl : public torch::nn::Module {
 public:
  GEGLUImpl(std::int64_t dim_in, std::int64_t dim_out, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& x) const;

 private:
  Linear proj{nullptr};
};
TORCH_MODULE(GEGLU);

class FeedForwardImpl : public torch::nn::Module {
 public:
  FeedForwardImpl(std::int64_t dim, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& x) const;

 private:
  torch::nn::ModuleList net;
  GEGLU geglu_{nullptr};
  Linear out_{nullptr};
};
TORCH_MODULE(FeedForward);

struct TransformerOptions {
  std::int64_t heads = 8, dim_head = 40;
  std::int64_t in_channels = 0;
  std::int64_t num_layers = 1;
  std::int64_t cross_attention_dim = 768;
  std::int64_t norm_groups = 32;
  bool use_linear_projection = false;
  bool only_cross_attention = false;
  bool upcast_attention = false;
};

class BasicTransformerBlockImpl : public torch::nn::Module {
 public:
  BasicTransformerBlockImpl(const TransformerOptions& o, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& context) const;

 private:
  bool only_cross_;
  LayerNorm norm1{nullptr}, norm2{nullptr}, norm3{nullptr};
  Attention attn1{nullptr}, attn2{nullptr};
  FeedForward ff{nullptr};
};
TORCH_MODULE(BasicTransformerBlock);

// Transformer2DModel over continuous inputs: group norm, proj_in (1x1 conv or
// linear), transformer blocks, proj_out, residual.
class Transformer2DModelImpl : public torch::nn::Module {
 public:
  Transformer2DModelImpl(const TransformerOptions& o, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& context) const;

 private:
  TransformerOptions o_;
  GroupNorm norm{nullptr};
  Conv2d proj_in_conv{nullptr}, proj_out_conv{nullptr};      // use_linear_projection false
  Linear proj_in_linear{nullptr}, proj_out_linear{nullptr};  // use_linear_projection true
  torch::nn::ModuleList transformer_blocks;
  std::vector<BasicTransformerBlock> blocks_;
};
TORCH_MODULE(Transformer2DModel);

// Sinusoidal timestep embedding (diffusers get_timestep_embedding), [N] -> [N, dim], fp32.
at::Tensor timestep_embedding(const at::Tensor& timesteps, std::int64_t dim, bool flip_sin_to_cos,
                              double downscale_freq_shift);

// TimestepEmbedding: linear_1, the activation, linear_2, then the optional
// post_act (diffusers' timestep_post_act).
class TimestepEmbeddingImpl : public torch::nn::Module {
 public:
  TimestepEmbeddingImpl(std::int64_t in, std::int64_t dim, Activation act, std::optional<Activation> post_act,
                        const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& x) const;  // [N, in] -> [N, dim]

 private:
  Activation act_;
  std::optional<Activation> post_act_;
  Linear linear_1{nullptr}, linear_2{nullptr};
};
TORCH_MODULE(TimestepEmbedding);

// Freeze every parameter (requires_grad false): the models are never trained,
// gradients flow only to their inputs.
void freeze(torch::nn::Module& module);
// Lay out every 4-D parameter (convolution weights) in `format`. With
// channels-last (NHWC) the attention blocks get their [B, HW, C] token layout
// as a view and GPU convolutions may run faster; on the CPU NCHW measured
// faster (bench/RESULTS.md), so the models are NCHW unless asked.
void set_memory_format(torch::nn::Module& module, at::MemoryFormat format);

}  // namespace dinv::sd
