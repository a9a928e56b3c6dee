// AutoencoderKL (diffusers), built from a diffusers `vae/config.json`: the
// Encoder to a diagonal Gaussian posterior, the Decoder (diffusers' vae.py, with
// the blocks of unet_blocks.h), the latent scaling factor. Parameter names are
// exactly the diffusers weight names.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "dinv/io/json.h"
#include "dinv/sd/layers.h"
#include "dinv/sd/unet_blocks.h"

namespace dinv::sd {

// The defaults are diffusers' (a key absent from the file keeps them).
struct VaeConfig {
  std::int64_t in_channels = 3, out_channels = 3, latent_channels = 4;
  std::vector<std::int64_t> block_out_channels{64};
  std::vector<std::string> down_block_types{"DownEncoderBlock2D"}, up_block_types{"UpDecoderBlock2D"};
  std::int64_t layers_per_block = 1;
  Activation act = Activation::silu;  // act_fn
  std::int64_t norm_num_groups = 32;
  std::int64_t sample_size = 32;
  double scaling_factor = 0.18215;
  std::optional<double> shift_factor;  // latents = (z - shift) * scale where set
  bool force_upcast = true;
  bool use_quant_conv = true, use_post_quant_conv = true;
  bool mid_block_add_attention = true;
  io::Json json;

  static VaeConfig from_json(const io::Json& json, const std::string& where);
  static VaeConfig from_file(const std::string& path);
  // Spatial downsampling factor: 2^(levels - 1) (8 for SD).
  std::int64_t downsampling_factor() const { return std::int64_t(1) << (block_out_channels.size() - 1); }
};

// The posterior q(z|x) = N(mean, std^2): diffusers' DiagonalGaussianDistribution
// (logvar clamped to [-30, 20]).
struct DiagonalGaussian {
  at::Tensor mean, logvar, std;
  explicit DiagonalGaussian(const at::Tensor& moments);  // [B, 2C, h, w]
  // mean + std * noise, the noise drawn with `generator` (a CPU generator
  // draws on the CPU, then moves: identical on any device).
  at::Tensor sample(std::optional<at::Generator> generator = std::nullopt) const;
  at::Tensor mode() const { return mean; }
};

// conv_in, down_blocks (DownEncoderBlock2D), mid_block (UNetMidBlock2D), conv_norm_out, conv_out.
class EncoderImpl : public torch::nn::Module {
 public:
  EncoderImpl(const VaeConfig& config, const at::TensorOptions& options);
  // images [B, in_channels, H, W] -> moments [B, 2 * latent_channels, H/f, W/f] (f: downsampling_factor()).
  at::Tensor forward(const at::Tensor& x) const;
  at::ScalarType dtype() const { return conv_in->weight.scalar_type(); }

 private:
  Activation act_;
  Conv2d conv_in{nullptr}, conv_out{nullptr};
  std::vector<DownEncoderBlock2D> down_blocks_;
  UNetMidBlock2D mid_block{nullptr};
  GroupNorm conv_norm_out{nullptr};
};
TORCH_MODULE(Encoder);

// conv_in, mid_block (UNetMidBlock2D), up_blocks (UpDecoderBlock2D), conv_norm_out, conv_out.
class DecoderImpl : public torch::nn::Module {
 public:
  DecoderImpl(const VaeConfig& config, const at::TensorOptions& options);
  // latents [B, latent_channels, h, w] -> images [B, out_channels, h*f, w*f].
  at::Tensor forward(const at::Tensor& z) const;

 private:
  Activation act_;
  Conv2d conv_in{nullptr}, conv_out{nullptr};
  UNetMidBlock2D mid_block{nullptr};
  std::vector<UpDecoderBlock2D> up_blocks_;
  GroupNorm conv_norm_out{nullptr};
};
TORCH_MODULE(Decoder);

class AutoencoderKLImpl : public torch::nn::Module {
 public:
  explicit AutoencoderKLImpl(const VaeConfig& config,
                             const at::TensorOptions& options = at::TensorOptions().dtype(at::kFloat));

  // images [B, 3, H, W] in [-1, 1] -> posterior over latents [B, C, H/f, W/f].
  // slice_size > 0 encodes at most that many images at a time.
  DiagonalGaussian encode(const at::Tensor& images, std::int64_t slice_size = 0);
  // Unscaled latents -> images; slice_size > 0 decodes that many at a time
  // (sliced decode for large batches: bounded memory, the same result).
  at::Tensor decode(const at::Tensor& latents, std::int64_t slice_size = 0);
  // The latent scale of the diffusion model: z * scaling_factor (after
  // subtracting shift_factor where the config has one), and its inverse.
  at::Tensor scale_latents(const at::Tensor& z) const;
  at::Tensor unscale_latents(const at::Tensor& z) const;

  const VaeConfig& config() const { return config_; }
  // Channels-last or NCHW (the default); outputs are NCHW-contiguous.
  void set_channels_last(bool on);
  bool channels_last() const { return channels_last_; }
  std::string describe() const;

 private:
  at::Tensor encode_moments(const at::Tensor& x);
  at::Tensor decode_one(const at::Tensor& z);
  VaeConfig config_;
  Encoder encoder{nullptr};
  Decoder decoder{nullptr};
  Conv2d quant_conv{nullptr}, post_quant_conv{nullptr};
  bool channels_last_ = false;
};
TORCH_MODULE(AutoencoderKL);

}  // namespace dinv::sd
