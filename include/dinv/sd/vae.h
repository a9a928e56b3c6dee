// AutoencoderKL (diffusers), built from a diffusers `vae/config.json`: encoder
// to a diagonal Gaussian posterior, decoder, the latent scaling factor.
// Parameter names are exactly the diffusers weight names.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "dinv/io/json.h"
#include "dinv/sd/layers.h"

namespace dinv::sd {

struct VaeConfig {
  std::int64_t in_channels = 3, out_channels = 3, latent_channels = 4;
  std::vector<std::int64_t> block_out_channels{64};
  std::int64_t layers_per_block = 1;
  Activation act = Activation::silu;
  std::string act_fn = "silu";
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
  struct Coder;
  at::Tensor encode_moments(const at::Tensor& x);
  at::Tensor decode_one(const at::Tensor& z);
  at::ScalarType conv_dtype() const;
  VaeConfig config_;
  std::shared_ptr<Coder> encoder_, decoder_;
  Conv2d quant_conv{nullptr}, post_quant_conv{nullptr};
  bool channels_last_ = false;
};
TORCH_MODULE(AutoencoderKL);

}  // namespace dinv::sd
