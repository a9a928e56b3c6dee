// The blocks of diffusers' unet_2d_blocks.py that Stable Diffusion uses, under
// their diffusers names: DownBlock2D, CrossAttnDownBlock2D,
// UNetMidBlock2DCrossAttn, UpBlock2D and CrossAttnUpBlock2D (the UNet), and
// DownEncoderBlock2D, UNetMidBlock2D and UpDecoderBlock2D (the VAE's encoder
// and decoder). Each registers diffusers' ModuleLists (`resnets`,
// `attentions`, `downsamplers` / `upsamplers`), so parameter names are the
// weight names ("down_blocks.1.attentions.0.proj_in.weight").
//
// The lists are registered in the order this project has always used (which
// is not always diffusers' attribute order): `init_random` visits modules in
// registration order, so the order fixes the weights of `dinv model init`.
#pragma once

#include <cstdint>
#include <vector>

#include "dinv/sd/layers.h"

namespace dinv::sd {

// What one block is built from (diffusers' get_down_block / get_up_block arguments).
struct UNetBlockOptions {
  std::int64_t in_channels = 0;  // into the block; up blocks: of the skip from the level's first layer
  std::int64_t out_channels = 0;
  std::int64_t prev_output_channel = 0;  // up blocks: the channels coming from the block below
  std::int64_t num_layers = 1;
  ResnetOptions resnet;            // norms, activation, time embedding; the channels are set per layer
  TransformerOptions transformer;  // CrossAttn blocks: heads, layers, cross_attention_dim; channels set per block
  bool add_sampler = false;        // a Downsample2D / Upsample2D after the layers
  std::int64_t downsample_padding = 1;
};

// ---- the UNet's down path ------------------------------------------------------

// DownBlock2D or CrossAttnDownBlock2D, as the UNet calls them.
class UNetDownBlockImpl : public torch::nn::Module {
 public:
  // x [B, C_in, H, W] -> [B, C_out, H/2, W/2] ([B, C_out, H, W] without a
  // downsampler). Appends each layer's output, then the downsampler's, to
  // `skips` (the UNet's skip connections). context [B, T, D] (unused by DownBlock2D).
  virtual at::Tensor forward(at::Tensor x, const at::Tensor& temb, const at::Tensor& context,
                             std::vector<at::Tensor>& skips) const = 0;

 protected:
  // [B, C_out, H, W] -> [B, C_out, H/2, W/2], also appended to `skips`; x unchanged without a downsampler.
  at::Tensor downsample(at::Tensor x, std::vector<at::Tensor>& skips) const;

  std::vector<ResnetBlock2D> resnets_;
  Downsample2D downsampler_{nullptr};
};

class DownBlock2DImpl : public UNetDownBlockImpl {
 public:
  DownBlock2DImpl(const UNetBlockOptions& o, const at::TensorOptions& options);
  at::Tensor forward(at::Tensor x, const at::Tensor& temb, const at::Tensor& context,
                     std::vector<at::Tensor>& skips) const override;
};
TORCH_MODULE(DownBlock2D);

class CrossAttnDownBlock2DImpl : public UNetDownBlockImpl {
 public:
  CrossAttnDownBlock2DImpl(const UNetBlockOptions& o, const at::TensorOptions& options);
  at::Tensor forward(at::Tensor x, const at::Tensor& temb, const at::Tensor& context,
                     std::vector<at::Tensor>& skips) const override;

 private:
  std::vector<Transformer2DModel> attentions_;
};
TORCH_MODULE(CrossAttnDownBlock2D);

// ---- the UNet's middle -------------------------------------------------------------

// resnets.0, attentions.0, resnets.1 (in_channels = out_channels).
class UNetMidBlock2DCrossAttnImpl : public torch::nn::Module {
 public:
  UNetMidBlock2DCrossAttnImpl(const UNetBlockOptions& o, const at::TensorOptions& options);
  // [B, C, H, W] -> [B, C, H, W]; context [B, T, D].
  at::Tensor forward(at::Tensor x, const at::Tensor& temb, const at::Tensor& context) const;

 private:
  std::vector<ResnetBlock2D> resnets_;
  Transformer2DModel attention_{nullptr};
};
TORCH_MODULE(UNetMidBlock2DCrossAttn);

// ---- the UNet's up path --------------------------------------------------------------

// UpBlock2D or CrossAttnUpBlock2D, as the UNet calls them.
class UNetUpBlockImpl : public torch::nn::Module {
 public:
  // x [B, C_prev, H, W] -> [B, C_out, 2H, 2W] ([B, C_out, H, W] without an
  // upsampler). Each layer takes the last of `skips` off and concatenates it
  // on channels. With `to_skip_size` the upsampler goes to the size of the
  // skip then left last (sizes that the down path did not halve evenly).
  virtual at::Tensor forward(at::Tensor x, std::vector<at::Tensor>& skips, const at::Tensor& temb,
                             const at::Tensor& context, bool to_skip_size) const = 0;

 protected:
  // [B, C, H, W] and the last skip [B, C_skip, H, W] (taken off `skips`) -> [B, C + C_skip, H, W].
  static at::Tensor concat_skip(const at::Tensor& x, std::vector<at::Tensor>& skips);
  // [B, C_out, H, W] -> [B, C_out, 2H, 2W] (or the size of skips.back()); x unchanged without an upsampler.
  at::Tensor upsample(at::Tensor x, const std::vector<at::Tensor>& skips, bool to_skip_size) const;

  std::vector<ResnetBlock2D> resnets_;
  Upsample2D upsampler_{nullptr};
};

class UpBlock2DImpl : public UNetUpBlockImpl {
 public:
  UpBlock2DImpl(const UNetBlockOptions& o, const at::TensorOptions& options);
  at::Tensor forward(at::Tensor x, std::vector<at::Tensor>& skips, const at::Tensor& temb, const at::Tensor& context,
                     bool to_skip_size) const override;
};
TORCH_MODULE(UpBlock2D);

class CrossAttnUpBlock2DImpl : public UNetUpBlockImpl {
 public:
  CrossAttnUpBlock2DImpl(const UNetBlockOptions& o, const at::TensorOptions& options);
  at::Tensor forward(at::Tensor x, std::vector<at::Tensor>& skips, const at::Tensor& temb, const at::Tensor& context,
                     bool to_skip_size) const override;

 private:
  std::vector<Transformer2DModel> attentions_;
};
TORCH_MODULE(CrossAttnUpBlock2D);

// ---- the VAE's blocks (no time embedding, no skip connections) ---------------------

class DownEncoderBlock2DImpl : public torch::nn::Module {
 public:
  DownEncoderBlock2DImpl(const UNetBlockOptions& o, const at::TensorOptions& options);
  // [B, C_in, H, W] -> [B, C_out, H/2, W/2] ([B, C_out, H, W] without a downsampler).
  at::Tensor forward(at::Tensor x) const;

 private:
  std::vector<ResnetBlock2D> resnets_;
  Downsample2D downsampler_{nullptr};
};
TORCH_MODULE(DownEncoderBlock2D);

// resnets.0, the optional attentions.0 (group norm, one head, residual), resnets.1.
class UNetMidBlock2DImpl : public torch::nn::Module {
 public:
  UNetMidBlock2DImpl(std::int64_t channels, const ResnetOptions& resnet, bool add_attention,
                     const at::TensorOptions& options);
  // [B, C, H, W] -> [B, C, H, W].
  at::Tensor forward(at::Tensor x) const;

 private:
  std::vector<ResnetBlock2D> resnets_;
  Attention attention_{nullptr};
};
TORCH_MODULE(UNetMidBlock2D);

class UpDecoderBlock2DImpl : public torch::nn::Module {
 public:
  UpDecoderBlock2DImpl(const UNetBlockOptions& o, const at::TensorOptions& options);
  // [B, C_in, H, W] -> [B, C_out, 2H, 2W] ([B, C_out, H, W] without an upsampler).
  at::Tensor forward(at::Tensor x) const;

 private:
  std::vector<ResnetBlock2D> resnets_;
  Upsample2D upsampler_{nullptr};
};
TORCH_MODULE(UpDecoderBlock2D);

}  // namespace dinv::sd
