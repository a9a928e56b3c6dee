// UNet2DConditionModel (diffusers), built from a diffusers `unet/config.json`:
// SD 1.x, SD 2.x and small test configurations. Parameter names are exactly
// the diffusers weight names. Unknown block types and unsupported config
// values are ModelErrors naming the file, the key and the value.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "dinv/io/json.h"
#include "dinv/sd/layers.h"
#include "dinv/sd/unet_blocks.h"

namespace dinv::sd {

// The defaults are diffusers' (a key absent from the file keeps them).
struct UNetConfig {
  std::int64_t sample_size = 64;
  std::int64_t in_channels = 4, out_channels = 4;
  bool center_input_sample = false;
  bool flip_sin_to_cos = true;
  double freq_shift = 0;
  std::vector<std::string> down_block_types{"CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                            "DownBlock2D"};
  std::vector<std::string> up_block_types{"UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D",
                                          "CrossAttnUpBlock2D"};
  std::string mid_block_type = "UNetMidBlock2DCrossAttn";  // "" for none
  std::vector<std::int64_t> block_out_channels{320, 640, 1280, 1280};
  // Per down block (already expanded from scalars); the up path uses them reversed.
  std::vector<std::int64_t> layers_per_block, cross_attention_dim, num_attention_heads, transformer_layers_per_block;
  std::vector<bool> only_cross_attention;
  std::int64_t downsample_padding = 1;
  double mid_block_scale_factor = 1.0;
  Activation act = Activation::silu;  // act_fn
  std::int64_t norm_num_groups = 32;
  double norm_eps = 1e-5;
  bool use_linear_projection = false;
  bool upcast_attention = false;
  bool resnet_scale_shift = false;
  bool resnet_skip_time_act = false;
  std::int64_t time_embed_dim = 0;  // resolved: time_embedding_dim or 4 * block_out_channels[0]
  // time_embedding_act_fn, timestep_post_act: nullopt for none (null in the file).
  std::optional<Activation> time_embedding_act, timestep_post_act;
  std::int64_t conv_in_kernel = 3, conv_out_kernel = 3;
  io::Json json;  // the config as read (for fingerprints and `model info`)

  // `where` names the file in error messages ("DIR/unet/config.json").
  static UNetConfig from_json(const io::Json& json, const std::string& where);
  static UNetConfig from_file(const std::string& path);
};

class UNet2DConditionModelImpl : public torch::nn::Module {
 public:
  explicit UNet2DConditionModelImpl(const UNetConfig& config,
                                    const at::TensorOptions& options = at::TensorOptions().dtype(at::kFloat));

  // sample [B, C, h, w]; timestep [B], [1] or a scalar tensor (any numeric
  // dtype); encoder_hidden_states [B, T, D]. Returns [B, out_channels, h, w]
  // in the dtype of the model. Differentiable with respect to every input.
  at::Tensor forward(const at::Tensor& sample, const at::Tensor& timestep, const at::Tensor& encoder_hidden_states);

  const UNetConfig& config() const { return config_; }
  // Channels-last or contiguous NCHW (the default) activations and
  // convolution weights. Outputs are NCHW-contiguous either way.
  void set_channels_last(bool on);
  bool channels_last() const { return channels_last_; }
  // A one-paragraph description of the architecture (for `dinv model info`).
  std::string describe() const;

 private:
  UNetConfig config_;
  Conv2d conv_in{nullptr}, conv_out{nullptr};
  GroupNorm conv_norm_out{nullptr};
  TimestepEmbedding time_embedding{nullptr};
  std::vector<std::shared_ptr<UNetDownBlockImpl>> down_blocks_;  // registered as the ModuleList down_blocks
  UNetMidBlock2DCrossAttn mid_block{nullptr};                    // none with mid_block_type null
  std::vector<std::shared_ptr<UNetUpBlockImpl>> up_blocks_;      // registered as the ModuleList up_blocks
  int num_upsamplers_ = 0;
  bool channels_last_ = false;
};
TORCH_MODULE(UNet2DConditionModel);

}  // namespace dinv::sd
