#include "dinv/sd/clip_text.h"

#include <algorithm>
#include <cmath>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <torch/nn/functional/activation.h>

#include "config_reader.h"
#include "dinv/core/error.h"
#include "dinv/core/util.h"
#include "dinv/io/safetensors.h"
#include "dinv/sd/layers.h"
#include "dinv/sd/tokenizer.h"

namespace dinv::sd {
namespace {

constexpr const char* kPrefix = "text_model.";

// Published SD folders (and transformers 4) name the weights text_model.*;
// transformers 5 saves CLIPTextModel without that prefix. Which one a file
// uses, and whether it carries the old position_ids buffer.
struct WeightLayout {
  bool prefixed = true;
  bool position_ids = false;
};

WeightLayout weight_layout(const std::vector<std::string>& files) {
  WeightLayout layout{false, false};
  for (const auto& f : files) {
    const io::SafetensorsFile file(f);
    for (const auto& info : file.tensors()) {
      const bool prefixed = info.name.rfind(kPrefix, 0) == 0;
      layout.prefixed = layout.prefixed || prefixed;
      const std::string bare = prefixed ? info.name.substr(std::string(kPrefix).size()) : info.name;
      layout.position_ids = layout.position_ids || bare == "embeddings.position_ids";
    }
  }
  return layout;
}

}  // namespace

// --- config -----------------------------------------------------------------

ClipTextConfig ClipTextConfig::from_file(const std::string& path) {
  return from_json(detail::read_model_json(path), path);
}

ClipTextConfig ClipTextConfig::from_json(const io::Json& json, const std::string& where) {
  const io::JsonObject o(json, where);
  ClipTextConfig c;
  if (o.has("architectures")) {
    const auto arch = o.get_string_list("architectures");
    if (arch.size() != 1 || arch[0] != "CLIPTextModel")
      throw ModelError(where + ": key 'architectures': expected [\"CLIPTextModel\"], found " +
                       o.at("architectures").dump());
  }
  using detail::between;
  static const std::vector<detail::Field<ClipTextConfig>> fields{
      detail::field("vocab_size", &ClipTextConfig::vocab_size, between{1, 1'000'000}),
      detail::field("max_position_embeddings", &ClipTextConfig::max_position_embeddings, between{1, 65536}),
  };
  c.encoder = ClipEncoderConfig::from_json(json, where, c.encoder);
  detail::read_fields(detail::ConfigReader(json, where), c, fields);
  return c;
}

io::Json ClipTextConfig::to_json() const {
  return io::Json{{"architectures", {"CLIPTextModel"}},
                  {"model_type", "clip_text_model"},
                  {"vocab_size", vocab_size},
                  {"hidden_size", encoder.hidden_size},
                  {"intermediate_size", encoder.intermediate_size},
                  {"num_hidden_layers", encoder.num_hidden_layers},
                  {"num_attention_heads", encoder.num_attention_heads},
                  {"max_position_embeddings", max_position_embeddings},
                  {"hidden_act", encoder.hidden_act},
                  {"layer_norm_eps", encoder.layer_norm_eps},
                  {"attention_dropout", 0.0},
                  {"initializer_factor", 1.0},
                  {"initializer_range", 0.02},
                  {"bos_token_id", 0},
                  {"eos_token_id", 2},
                  {"pad_token_id", 1},
                  {"projection_dim", encoder.hidden_size},
                  {"torch_dtype", "float32"}};
}

std::string ClipTextConfig::describe() const {
  const ClipEncoderConfig& e = encoder;
  return "CLIPTextModel: " + std::to_string(e.num_hidden_layers) + " layers, width " + std::to_string(e.hidden_size) +
         ", " + std::to_string(e.num_attention_heads) + " heads, " + e.hidden_act + ", " +
         std::to_string(max_position_embeddings) + " positions, vocabulary " + std::to_string(vocab_size);
}

at::Tensor ClipTextOutput::penultimate() const {
  if (hidden_states.size() < 2) throw ModelError("the text encoder has no hidden states to take the penultimate of");
  return hidden_states[hidden_states.size() - 2];
}

// --- layers ---------------------------------------------------------------

ClipTextEmbeddingsImpl::ClipTextEmbeddingsImpl(const ClipTextConfig& c, bool position_ids_buffer) {
  token_embedding_ = register_module("token_embedding", torch::nn::Embedding(c.vocab_size, c.encoder.hidden_size));
  position_embedding_ =
      register_module("position_embedding", torch::nn::Embedding(c.max_position_embeddings, c.encoder.hidden_size));
  // Older checkpoints store 0..max_positions-1 as a buffer; it is read and checked like any weight.
  if (position_ids_buffer)
    register_buffer("position_ids", at::arange(c.max_position_embeddings, at::kLong).unsqueeze(0));
}

at::Tensor ClipTextEmbeddingsImpl::forward(const at::Tensor& input_ids) {
  const auto t = input_ids.size(1);
  const auto positions = at::arange(t, input_ids.options().dtype(at::kLong));
  return token_embedding_(input_ids) + position_embedding_(positions).unsqueeze(0);
}

ClipTextTransformerImpl::ClipTextTransformerImpl(const ClipTextConfig& c, bool position_ids_buffer) {
  embeddings_ = register_module("embeddings", ClipTextEmbeddings(c, position_ids_buffer));
  encoder_ = register_module("encoder", ClipEncoder(c.encoder, /*causal=*/true));
  final_layer_norm_ = register_module(
      "final_layer_norm",
      torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.encoder.hidden_size}).eps(c.encoder.layer_norm_eps)));
}

ClipTextOutput ClipTextTransformerImpl::forward(const at::Tensor& input_ids) {
  ClipTextOutput out;
  const at::Tensor h = encoder_(embeddings_(input_ids), &out.hidden_states);  // [B, T, D]
  out.last_hidden_state = final_layer_norm_(h);
  return out;
}

at::Tensor ClipTextTransformerImpl::final_layer_norm(const at::Tensor& x) { return final_layer_norm_(x); }

// --- the model ----------------------------------------------------------------

ClipTextModelImpl::ClipTextModelImpl(const ClipTextConfig& config, bool position_ids_buffer) : config_(config) {
  text_model_ = register_module("text_model", ClipTextTransformer(config, position_ids_buffer));
}

ClipTextOutput ClipTextModelImpl::forward(const at::Tensor& input_ids) {
  if (input_ids.dim() != 2 || at::isFloatingType(input_ids.scalar_type()))
    throw ModelError("text encoder input_ids: expected a [batch, tokens] integer tensor, found " +
                     std::string(at::toString(input_ids.scalar_type())) + " " + shape_str(input_ids.sizes().vec()));
  if (input_ids.size(1) > config_.max_position_embeddings)
    throw ModelError("text encoder input_ids: " + std::to_string(input_ids.size(1)) + " tokens, the model has " +
                     std::to_string(config_.max_position_embeddings) + " positions");
  if (input_ids.numel() > 0) {
    const auto lo = input_ids.min().item<std::int64_t>(), hi = input_ids.max().item<std::int64_t>();
    if (lo < 0 || hi >= config_.vocab_size)
      throw ModelError("text encoder input_ids: ids must lie in [0, " + std::to_string(config_.vocab_size) +
                       "), found " + std::to_string(lo < 0 ? lo : hi));
  }
  return text_model_(input_ids.to(at::kLong));
}

at::Tensor ClipTextModelImpl::final_layer_norm(const at::Tensor& x) { return text_model_->final_layer_norm(x); }

ClipTextModel load_clip_text_model(const std::string& dir, const LoadOptions& options, const std::string& component) {
  const ComponentFiles files = find_component(dir, component, options.variant, {"model"});
  const ClipTextConfig config = ClipTextConfig::from_file(files.config);
  const WeightLayout layout = weight_layout(files.weights);
  ClipTextModel model(config, layout.position_ids);
  model->to(options.device);
  for (auto& p : model->parameters()) p.set_data(p.data().to(options.dtype));  // buffers keep their int64
  // Bare names (transformers 5) are the names inside text_model.
  torch::nn::Module* root = model.get();
  if (!layout.prefixed) root = model->text_model().get();
  load_weights(*root, files.weights, options);
  freeze(*model);
  model->eval();
  return model;
}

TextLayer text_layer_from_string(const std::string& name) {
  if (name == "last") return TextLayer::last;
  if (name == "penultimate") return TextLayer::penultimate;
  throw ConfigError("text layer: expected 'last' or 'penultimate', found '" + name + "'");
}

at::Tensor encode_prompts(const ClipTokenizer& tokenizer, ClipTextModel& encoder,
                          const std::vector<std::string>& prompts, TextLayer layer, std::vector<bool>* truncated) {
  const at::Device device = encoder->parameters().front().device();
  const at::Tensor ids = tokenizer.encode_batch(prompts, truncated).to(device);
  torch::NoGradGuard no_grad;
  const ClipTextOutput out = encoder->forward(ids);
  if (layer == TextLayer::last) return out.last_hidden_state;
  return encoder->final_layer_norm(out.penultimate());
}

}  // namespace dinv::sd
