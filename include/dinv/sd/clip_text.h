// CLIPTextModel, the text encoder of Stable Diffusion (transformers' layout and
// weight names, so that text_encoder/model.safetensors loads by name): token +
// position embeddings, pre-LayerNorm transformer layers with a causal mask,
// quick_gelu (SD 1.x) or gelu (SD 2.x), final_layer_norm. The layers are
// clip_encoder.h's, shared with the vision tower.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include "dinv/io/json.h"
#include "dinv/sd/clip_encoder.h"
#include "dinv/sd/loader.h"

namespace dinv::sd {

class ClipTokenizer;

struct ClipTextConfig {
  std::int64_t vocab_size = 49408;
  std::int64_t max_position_embeddings = 77;
  ClipEncoderConfig encoder;  // hidden_size, layers, heads, hidden_act...: the keys the vision tower shares

  // From text_encoder/config.json; ModelError naming the file and key for bad values.
  static ClipTextConfig from_json(const io::Json& json, const std::string& where);
  static ClipTextConfig from_file(const std::string& path);
  io::Json to_json() const;  // a config.json transformers loads as CLIPTextModel
  // "CLIPTextModel: 12 layers, width 768, ..." (for `dinv model info`).
  std::string describe() const;
};

// What the encoder computes for [B, T] token ids.
struct ClipTextOutput {
  at::Tensor last_hidden_state;           // [B, T, D], after final_layer_norm
  std::vector<at::Tensor> hidden_states;  // as transformers: embeddings, then each layer's output (no final norm)
  at::Tensor penultimate() const;         // hidden_states[-2]: the second-to-last layer's output
};

class ClipTextEmbeddingsImpl : public torch::nn::Module {
 public:
  ClipTextEmbeddingsImpl(const ClipTextConfig& config, bool position_ids_buffer = false);
  at::Tensor forward(const at::Tensor& input_ids);

 private:
  torch::nn::Embedding token_embedding_{nullptr}, position_embedding_{nullptr};
};
TORCH_MODULE(ClipTextEmbeddings);

// transformers' CLIPTextTransformer ("text_model").
class ClipTextTransformerImpl : public torch::nn::Module {
 public:
  ClipTextTransformerImpl(const ClipTextConfig& config, bool position_ids_buffer = false);
  ClipTextOutput forward(const at::Tensor& input_ids);
  at::Tensor final_layer_norm(const at::Tensor& x);

 private:
  ClipTextEmbeddings embeddings_{nullptr};
  ClipEncoder encoder_{nullptr};
  torch::nn::LayerNorm final_layer_norm_{nullptr};
};
TORCH_MODULE(ClipTextTransformer);

class ClipTextModelImpl : public torch::nn::Module {
 public:
  // `position_ids_buffer`: hold the embeddings.position_ids buffer that older
  // checkpoints carry (the values are fixed; it only lets such files load by name).
  explicit ClipTextModelImpl(const ClipTextConfig& config, bool position_ids_buffer = false);
  // input_ids: [B, T] integer, T <= max_position_embeddings.
  ClipTextOutput forward(const at::Tensor& input_ids);
  at::Tensor final_layer_norm(const at::Tensor& x);
  const ClipTextConfig& config() const { return config_; }
  ClipTextTransformer text_model() const { return text_model_; }

 private:
  ClipTextConfig config_;
  ClipTextTransformer text_model_{nullptr};
};
TORCH_MODULE(ClipTextModel);

// DIR/COMPONENT/config.json + model[.VARIANT].safetensors (or shards), through
// sd::load_weights: missing / unexpected / wrong-shape tensors are ModelErrors
// naming file and tensor; pickle files are refused. Weight names: text_model.*
// as published, or bare as transformers 5 saves them. Frozen, in eval mode.
ClipTextModel load_clip_text_model(const std::string& dir, const LoadOptions& options = {},
                                   const std::string& component = "text_encoder");

// Which hidden state conditions the UNet.
enum class TextLayer {
  last,         // last_hidden_state (SD 1.x, and SD 2.x whose 23-layer encoder is already cut)
  penultimate,  // final_layer_norm(hidden_states[-2]), as diffusers' pipelines do for clip_skip=1
};
TextLayer text_layer_from_string(const std::string& name);  // "last" | "penultimate"

// Prompts -> [B, max_length, D] conditioning on the encoder's device and dtype.
// `truncated`, when given, receives one flag per prompt (for a warning).
at::Tensor encode_prompts(const ClipTokenizer& tokenizer, ClipTextModel& encoder,
                          const std::vector<std::string>& prompts, TextLayer layer = TextLayer::last,
                          std::vector<bool>* truncated = nullptr);

}  // namespace dinv::sd
