#include "dinv/sd/clip_text.h"

#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <sstream>

#include <ATen/ATen.h>
#include <torch/nn/functional/activation.h>

#include "dinv/core/error.h"
#include "dinv/io/safetensors.h"
#include "dinv/sd/tokenizer.h"

namespace dinv::sd {
namespace {

std::string shape_str(at::IntArrayRef shape) {
  std::ostringstream s;
  s << "[";
  for (size_t i = 0; i < shape.size(); ++i) s << (i ? ", " : "") << shape[i];
  return s.str() + "]";
}

constexpr const char* kPrefix = "text_model.";

// Published SD folders (and transformers 4) name the weights text_model.*;
// transformers 5 saves CLIPTextModel without that prefix. Both load: the file's
// names mapped to ours (which are the published ones).
std::map<std::string, std::string> our_names(const std::vector<std::string>& file_names) {
  const bool bare = std::none_of(file_names.begin(), file_names.end(),
                                 [](const std::string& n) { return n.rfind(kPrefix, 0) == 0; });
  std::map<std::string, std::string> ours;  // our name -> name in the file
  for (const auto& n : file_names) ours[bare ? kPrefix + n : n] = n;
  return ours;
}

// Older checkpoints carry this non-persistent buffer; transformers ignores it too.
bool ignorable(const std::string& name) { return name == std::string(kPrefix) + "embeddings.position_ids"; }

std::string listed(const std::vector<std::string>& names) {
  std::string out;
  for (size_t i = 0; i < names.size() && i < 5; ++i) out += (i ? ", " : "") + names[i];
  if (names.size() > 5) out += " (and " + std::to_string(names.size() - 5) + " more)";
  return out;
}

// Every name the model expects is present with its shape, and nothing else is:
// ModelError naming the source, the tensors, expected and found otherwise.
void check_names(const torch::OrderedDict<std::string, at::Tensor>& params,
                 const std::map<std::string, std::vector<std::int64_t>>& found, const std::string& source) {
  std::vector<std::string> missing, unexpected;
  for (const auto& p : params) {
    auto it = found.find(p.key());
    if (it == found.end()) {
      missing.push_back(p.key());
    } else if (at::IntArrayRef(it->second) != p.value().sizes()) {
      throw ModelError(source + ": tensor '" + p.key() + "' has shape " + shape_str(it->second) + ", expected " +
                       shape_str(p.value().sizes()) + " for this text_encoder/config.json");
    }
  }
  for (const auto& [name, shape] : found)
    if (!params.contains(name) && !ignorable(name)) unexpected.push_back(name);
  if (!missing.empty())
    throw ModelError(source + ": missing " + std::to_string(missing.size()) + " tensor(s) the CLIPTextModel needs: " +
                     listed(missing));
  if (!unexpected.empty())
    throw ModelError(source + ": unexpected tensor(s) not in a CLIPTextModel of this config: " + listed(unexpected));
}

bool is_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

at::Tensor quick_gelu(const at::Tensor& x) { return x * at::sigmoid(1.702 * x); }

}  // namespace

// --- config -----------------------------------------------------------------

ClipTextConfig ClipTextConfig::from_json(const io::Json& json, const std::string& where) {
  const io::JsonObject o(json, where);
  ClipTextConfig c;
  if (o.has("architectures")) {
    const auto arch = o.get_string_list("architectures");
    if (arch.size() != 1 || arch[0] != "CLIPTextModel")
      throw ModelError(where + ": key 'architectures': expected [\"CLIPTextModel\"], found " +
                       o.at("architectures").dump());
  }
  c.vocab_size = o.get_int("vocab_size", c.vocab_size);
  c.hidden_size = o.get_int("hidden_size", c.hidden_size);
  c.intermediate_size = o.get_int("intermediate_size", c.intermediate_size);
  c.num_hidden_layers = o.get_int("num_hidden_layers", c.num_hidden_layers);
  c.num_attention_heads = o.get_int("num_attention_heads", c.num_attention_heads);
  c.max_position_embeddings = o.get_int("max_position_embeddings", c.max_position_embeddings);
  c.hidden_act = o.get_string("hidden_act", c.hidden_act);
  c.layer_norm_eps = o.get_double("layer_norm_eps", c.layer_norm_eps);
  auto positive = [&](const char* key, std::int64_t v) {
    if (v <= 0) throw ModelError(where + ": key '" + key + "': expected a positive integer, found " + std::to_string(v));
  };
  positive("vocab_size", c.vocab_size);
  positive("hidden_size", c.hidden_size);
  positive("intermediate_size", c.intermediate_size);
  positive("num_hidden_layers", c.num_hidden_layers);
  positive("num_attention_heads", c.num_attention_heads);
  positive("max_position_embeddings", c.max_position_embeddings);
  if (c.hidden_size % c.num_attention_heads != 0)
    throw ModelError(where + ": hidden_size " + std::to_string(c.hidden_size) + " is not divisible by " +
                     "num_attention_heads " + std::to_string(c.num_attention_heads));
  if (c.hidden_act != "quick_gelu" && c.hidden_act != "gelu" && c.hidden_act != "gelu_new")
    throw ModelError(where + ": key 'hidden_act': expected quick_gelu, gelu or gelu_new, found '" + c.hidden_act + "'");
  return c;
}

io::Json ClipTextConfig::to_json() const {
  return io::Json{{"architectures", {"CLIPTextModel"}},
                  {"model_type", "clip_text_model"},
                  {"vocab_size", vocab_size},
                  {"hidden_size", hidden_size},
                  {"intermediate_size", intermediate_size},
                  {"num_hidden_layers", num_hidden_layers},
                  {"num_attention_heads", num_attention_heads},
                  {"max_position_embeddings", max_position_embeddings},
                  {"hidden_act", hidden_act},
                  {"layer_norm_eps", layer_norm_eps},
                  {"attention_dropout", 0.0},
                  {"initializer_factor", 1.0},
                  {"initializer_range", 0.02},
                  {"bos_token_id", 0},
                  {"eos_token_id", 2},
                  {"pad_token_id", 1},
                  {"projection_dim", hidden_size},
                  {"torch_dtype", "float32"}};
}

at::Tensor ClipTextOutput::penultimate() const {
  if (hidden_states.size() < 2) throw ModelError("the text encoder has no hidden states to take the penultimate of");
  return hidden_states[hidden_states.size() - 2];
}

// --- layers -----------------------------------------------------------------

ClipAttentionImpl::ClipAttentionImpl(const ClipTextConfig& c) : heads_(c.num_attention_heads) {
  q_proj_ = register_module("q_proj", torch::nn::Linear(c.hidden_size, c.hidden_size));
  k_proj_ = register_module("k_proj", torch::nn::Linear(c.hidden_size, c.hidden_size));
  v_proj_ = register_module("v_proj", torch::nn::Linear(c.hidden_size, c.hidden_size));
  out_proj_ = register_module("out_proj", torch::nn::Linear(c.hidden_size, c.hidden_size));
}

at::Tensor ClipAttentionImpl::forward(const at::Tensor& x) {
  const auto b = x.size(0), t = x.size(1), d = x.size(2);
  auto heads = [&](const at::Tensor& y) { return y.view({b, t, heads_, d / heads_}).transpose(1, 2); };
  // SDPA scales by 1/sqrt(head_dim), as CLIP does; the causal mask lets each
  // token see only itself and the tokens before it.
  at::Tensor o = at::scaled_dot_product_attention(heads(q_proj_(x)), heads(k_proj_(x)), heads(v_proj_(x)), {}, 0.0,
                                                  /*is_causal=*/true);
  return out_proj_(o.transpose(1, 2).reshape({b, t, d}));
}

ClipMlpImpl::ClipMlpImpl(const ClipTextConfig& c) : activation_(c.hidden_act) {
  fc1_ = register_module("fc1", torch::nn::Linear(c.hidden_size, c.intermediate_size));
  fc2_ = register_module("fc2", torch::nn::Linear(c.intermediate_size, c.hidden_size));
}

at::Tensor ClipMlpImpl::forward(const at::Tensor& x) {
  at::Tensor h = fc1_(x);
  if (activation_ == "quick_gelu") h = quick_gelu(h);
  else if (activation_ == "gelu") h = at::gelu(h);
  else h = at::gelu(h, "tanh");  // gelu_new
  return fc2_(h);
}

ClipEncoderLayerImpl::ClipEncoderLayerImpl(const ClipTextConfig& c) {
  auto norm = [&] {
    return torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.hidden_size}).eps(c.layer_norm_eps));
  };
  self_attn_ = register_module("self_attn", ClipAttention(c));
  layer_norm1_ = register_module("layer_norm1", norm());
  mlp_ = register_module("mlp", ClipMlp(c));
  layer_norm2_ = register_module("layer_norm2", norm());
}

at::Tensor ClipEncoderLayerImpl::forward(const at::Tensor& x) {
  at::Tensor h = x + self_attn_(layer_norm1_(x));
  return h + mlp_(layer_norm2_(h));
}

ClipTextEmbeddingsImpl::ClipTextEmbeddingsImpl(const ClipTextConfig& c) {
  token_embedding_ = register_module("token_embedding", torch::nn::Embedding(c.vocab_size, c.hidden_size));
  position_embedding_ =
      register_module("position_embedding", torch::nn::Embedding(c.max_position_embeddings, c.hidden_size));
}

at::Tensor ClipTextEmbeddingsImpl::forward(const at::Tensor& input_ids) {
  const auto t = input_ids.size(1);
  const auto positions = at::arange(t, input_ids.options().dtype(at::kLong));
  return token_embedding_(input_ids) + position_embedding_(positions).unsqueeze(0);
}

ClipTextTransformerImpl::ClipTextTransformerImpl(const ClipTextConfig& c) {
  embeddings_ = register_module("embeddings", ClipTextEmbeddings(c));
  // transformers nests the layers as encoder.layers.N.
  auto encoder = register_module("encoder", std::make_shared<torch::nn::Module>());
  layers_ = encoder->register_module("layers", torch::nn::ModuleList());
  for (std::int64_t i = 0; i < c.num_hidden_layers; ++i) layers_->push_back(ClipEncoderLayer(c));
  final_layer_norm_ = register_module(
      "final_layer_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.hidden_size}).eps(c.layer_norm_eps)));
}

ClipTextOutput ClipTextTransformerImpl::forward(const at::Tensor& input_ids) {
  ClipTextOutput out;
  at::Tensor h = embeddings_(input_ids);
  out.hidden_states.push_back(h);
  for (const auto& layer : *layers_) {
    h = layer->as<ClipEncoderLayer>()->forward(h);
    out.hidden_states.push_back(h);
  }
  out.last_hidden_state = final_layer_norm_(h);
  return out;
}

at::Tensor ClipTextTransformerImpl::final_layer_norm(const at::Tensor& x) { return final_layer_norm_(x); }

// --- the model ----------------------------------------------------------------

ClipTextModelImpl::ClipTextModelImpl(const ClipTextConfig& config) : config_(config) {
  text_model_ = register_module("text_model", ClipTextTransformer(config));
}

ClipTextOutput ClipTextModelImpl::forward(const at::Tensor& input_ids) {
  if (input_ids.dim() != 2 || at::isFloatingType(input_ids.scalar_type()))
    throw ModelError("text encoder input_ids: expected a [batch, tokens] integer tensor, found " +
                     std::string(at::toString(input_ids.scalar_type())) + " " + shape_str(input_ids.sizes()));
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

void ClipTextModelImpl::load_weights(const std::map<std::string, at::Tensor>& tensors, const std::string& source) {
  std::vector<std::string> file_names;
  for (const auto& [name, t] : tensors) file_names.push_back(name);
  const auto names = our_names(file_names);
  std::map<std::string, std::vector<std::int64_t>> found;
  for (const auto& [ours, theirs] : names) found[ours] = tensors.at(theirs).sizes().vec();
  const auto params = named_parameters();
  check_names(params, found, source);
  torch::NoGradGuard no_grad;
  for (const auto& p : params) p.value().copy_(tensors.at(names.at(p.key())));
}

void ClipTextModelImpl::load_safetensors(const std::string& path) {
  const io::SafetensorsFile file(path);
  std::vector<std::string> file_names;
  for (const auto& info : file.tensors()) file_names.push_back(info.name);
  const auto names = our_names(file_names);
  std::map<std::string, std::vector<std::int64_t>> found;
  for (const auto& [ours, theirs] : names) found[ours] = file.info(theirs).shape;
  const auto params = named_parameters();
  check_names(params, found, path);
  torch::NoGradGuard no_grad;
  for (const auto& p : params) {
    const std::string& name = names.at(p.key());
    at::Tensor dst = p.value();
    if (file.info(name).dtype == dst.scalar_type() && dst.is_cpu() && dst.is_contiguous())
      file.read_into(name, dst);  // straight from the file, no second copy
    else
      dst.copy_(file.tensor(name));
  }
}

ClipTextModel load_clip_text_model(const std::string& dir) {
  const std::string config_path = dir + "/config.json";
  const ClipTextConfig config = ClipTextConfig::from_json(io::read_json_file(config_path), config_path);
  const std::string weights = dir + "/model.safetensors";
  if (!is_file(weights)) {
    for (const char* pickle : {"pytorch_model.bin", "model.ckpt", "model.pt"})
      if (is_file(dir + "/" + pickle))
        throw ModelError(dir + "/" + pickle + " is a pickle file, which dinv never loads (it can run code): " +
                         "convert it to " + weights + " (e.g. save_pretrained(..., safe_serialization=True))");
    throw IoError(weights + ": file missing (the text encoder's weights)");
  }
  ClipTextModel model(config);
  model->eval();
  model->load_safetensors(weights);
  return model;
}

TextLayer text_layer_from_string(const std::string& name) {
  if (name == "last") return TextLayer::last;
  if (name == "penultimate") return TextLayer::penultimate;
  throw ConfigError("text layer: expected 'last' or 'penultimate', found '" + name + "'");
}

at::Tensor encode_prompts(const ClipTokenizer& tokenizer, ClipTextModel& encoder, const std::vector<std::string>& prompts,
                          TextLayer layer, std::vector<bool>* truncated) {
  const at::Device device = encoder->parameters().front().device();
  const at::Tensor ids = tokenizer.encode_batch(prompts, truncated).to(device);
  torch::NoGradGuard no_grad;
  const ClipTextOutput out = encoder->forward(ids);
  if (layer == TextLayer::last) return out.last_hidden_state;
  return encoder->final_layer_norm(out.penultimate());
}

}  // namespace dinv::sd
