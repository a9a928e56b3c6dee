// CLIPVisionModelWithProjection, CLIP's image tower (transformers' layout and
// weight names, so that a saved folder's model.safetensors loads by name):
// patch embedding (a stride-patch convolution) + class token + position
// embeddings, pre_layrnorm, the encoder layers shared with the text tower
// (clip_encoder.h, no causal mask), post_layernorm on the class token, and
// visual_projection. Also CLIPImageProcessor's preprocessing.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include <torch/nn/module.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include "dinv/io/json.h"
#include "dinv/io/resize.h"
#include "dinv/sd/clip_encoder.h"
#include "dinv/sd/loader.h"

namespace dinv::sd {

struct ClipVisionConfig {
  ClipEncoderConfig encoder{768, 3072, 12, 12, "quick_gelu", 1e-5};  // ViT-B/32
  std::int64_t image_size = 224;
  std::int64_t patch_size = 32;
  std::int64_t num_channels = 3;
  std::int64_t projection_dim = 512;

  // From a CLIPVisionConfig config.json (or a CLIPConfig's "vision_config");
  // ModelError naming the file and key for bad values.
  static ClipVisionConfig from_json(const io::Json& json, const std::string& where);
  std::int64_t grid() const { return image_size / patch_size; }
};

struct ClipVisionOutput {
  at::Tensor image_embeds;       // [B, projection_dim]: visual_projection(post_layernorm(class token))
  at::Tensor last_hidden_state;  // [B, 1 + grid^2, D]: the last encoder layer's output (no norm)
};

class ClipVisionEmbeddingsImpl : public torch::nn::Module {
 public:
  explicit ClipVisionEmbeddingsImpl(const ClipVisionConfig& config);
  at::Tensor forward(const at::Tensor& pixel_values);  // [B, C, S, S] -> [B, 1 + grid^2, D]

 private:
  at::Tensor class_embedding_;  // [D]
  torch::nn::Conv2d patch_embedding_{nullptr};
  torch::nn::Embedding position_embedding_{nullptr};
};
TORCH_MODULE(ClipVisionEmbeddings);

// transformers' CLIPVisionTransformer ("vision_model").
class ClipVisionTransformerImpl : public torch::nn::Module {
 public:
  explicit ClipVisionTransformerImpl(const ClipVisionConfig& config);
  // pixel_values [B, C, S, S] -> last_hidden_state [B, 1 + grid^2, D]; `pooled`
  // receives post_layernorm of the class token [B, D].
  at::Tensor forward(const at::Tensor& pixel_values, at::Tensor* pooled);

 private:
  ClipVisionEmbeddings embeddings_{nullptr};
  torch::nn::LayerNorm pre_layrnorm_{nullptr};  // sic: transformers' name
  ClipEncoder encoder_{nullptr};
  torch::nn::LayerNorm post_layernorm_{nullptr};
};
TORCH_MODULE(ClipVisionTransformer);

class ClipVisionModelImpl : public torch::nn::Module {
 public:
  explicit ClipVisionModelImpl(const ClipVisionConfig& config);
  // pixel_values: [B, num_channels, image_size, image_size] float, as
  // ClipImageProcessor makes them.
  ClipVisionOutput forward(const at::Tensor& pixel_values);
  const ClipVisionConfig& config() const { return config_; }

 private:
  ClipVisionConfig config_;
  ClipVisionTransformer vision_model_{nullptr};
  torch::nn::Linear visual_projection_{nullptr};
};
TORCH_MODULE(ClipVisionModel);

// DIR/config.json + DIR/model[.VARIANT].safetensors (or shards), as
// transformers' CLIPVisionModelWithProjection.save_pretrained writes them:
// missing / unexpected / wrong-shape tensors are ModelErrors naming file and
// tensor. Frozen, in eval mode.
ClipVisionModel load_clip_vision_model(const std::string& dir, const LoadOptions& options = {});

// CLIPImageProcessor (preprocessor_config.json): resize the shortest side to
// `shortest_edge` (Pillow's filter, the long side truncated as transformers
// does), centre crop, rescale, normalise with the file's mean and std.
struct ClipImageProcessor {
  bool do_resize = true;
  std::int64_t shortest_edge = 224;
  io::ResizeFilter resample = io::ResizeFilter::bicubic;
  bool do_center_crop = true;
  std::int64_t crop_height = 224, crop_width = 224;
  bool do_rescale = true;
  double rescale_factor = 1.0 / 255.0;
  bool do_normalize = true;
  std::array<double, 3> image_mean{0.48145466, 0.4578275, 0.40821073};
  std::array<double, 3> image_std{0.26862954, 0.26130258, 0.27577711};

  // DIR/preprocessor_config.json; ModelError naming the file and key.
  static ClipImageProcessor from_file(const std::string& path);
  // uint8 [H, W, C] (C = 1 or 3; grey is replicated, as do_convert_rgb) -> float [3, crop_h, crop_w].
  at::Tensor operator()(const at::Tensor& image) const;
};

}  // namespace dinv::sd
