// The text side of `dinv model`: the CLIP text encoder as a run component,
// `dinv model tokenize`, descriptions for `info`, and the text_encoder/ and
// tokenizer/ folders that `dinv model init` writes.
#include "dinv/sd/text_hooks.h"

#include <sys/stat.h>

#include <iostream>
#include <sstream>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/grad_mode.h>

#include "config_reader.h"
#include "dinv/core/error.h"
#include "dinv/core/log.h"
#include "dinv/io/safetensors.h"
#include "dinv/sd/clip_text.h"
#include "dinv/sd/presets.h"
#include "dinv/sd/tokenizer.h"

namespace dinv::sd {
namespace {

bool is_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// The published text encoders of SD 1.5 and SD 2.1; tiny matches the tiny UNet's width.
ClipTextConfig preset_text_config(const std::string& preset) {
  ClipTextConfig c;
  c.hidden_size = preset_cross_attention_dim(preset);  // ConfigError for an unknown preset
  if (preset == "tiny") {
    c.intermediate_size = 37;
    c.num_hidden_layers = 5;
    c.num_attention_heads = 4;
  } else if (preset == "sd15") {
    c.intermediate_size = 3072;
    c.num_hidden_layers = 12;
    c.num_attention_heads = 12;
  } else {  // sd21: OpenCLIP ViT-H text tower, last layer already removed
    c.intermediate_size = 4096;
    c.num_hidden_layers = 23;
    c.num_attention_heads = 16;
    c.hidden_act = "gelu";
  }
  return c;
}

// Random weights as transformers initialises CLIP: N(0, 0.02), LayerNorm 1/0, biases 0.
void randomize(ClipTextModel& model, std::uint64_t seed) {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  torch::NoGradGuard no_grad;
  for (auto& p : model->named_parameters()) {
    const std::string& name = p.key();
    at::Tensor t = p.value();
    const bool norm = name.find("layer_norm") != std::string::npos;
    if (name.size() > 5 && name.compare(name.size() - 5, 5, ".bias") == 0)
      t.zero_();
    else if (norm)
      t.fill_(1.0);
    else
      t.normal_(0.0, 0.02, gen);
  }
}

// The tokenizer folder of a pipeline folder, or DIR itself when it is one.
std::string tokenizer_dir(const std::string& dir) { return is_file(dir + "/vocab.json") ? dir : dir + "/tokenizer"; }

std::string join_ids(const std::vector<std::int64_t>& ids, std::int64_t count) {
  std::ostringstream s;
  for (std::int64_t i = 0; i < count; ++i) s << (i ? " " : "") << ids[static_cast<size_t>(i)];
  return s.str();
}

int tokenize_command(const std::vector<std::string>& args) {
  if (args.size() < 2)
    throw ConfigError("dinv model tokenize: expected a model (or tokenizer) folder and one or more texts");
  const ClipTokenizer tokenizer = ClipTokenizer::from_folder(tokenizer_dir(args[0]));
  for (size_t i = 1; i < args.size(); ++i) {
    const TokenizedPrompt t = tokenizer.encode(args[i]);
    if (t.truncated) {
      const auto content = static_cast<std::int64_t>(tokenizer.encode_text(args[i]).size());
      log::warn("prompt " + std::to_string(i) + " is " + std::to_string(content + 2) + " tokens long; truncated to " +
                std::to_string(tokenizer.max_length()) + " (the text encoder sees only the first " +
                std::to_string(tokenizer.max_length() - 2) + " tokens of it)");
    }
    std::string tokens;
    for (std::int64_t k = 0; k < t.length; ++k)
      tokens += (k ? " " : "") + tokenizer.token(t.ids[static_cast<size_t>(k)]);
    std::cout << "ids: " << join_ids(t.ids, t.length) << "\n"
              << "tokens: " << tokens << "\n"
              << "length: " << t.length << " of " << tokenizer.max_length() << " (padded with id " << tokenizer.pad_id()
              << " '" << tokenizer.token(tokenizer.pad_id()) << "')" << (t.truncated ? ", truncated" : "") << "\n";
  }
  return 0;
}

}  // namespace

ComponentEntries write_text_components(const std::string& out, const std::string& preset, std::uint64_t seed) {
  const ClipTextConfig config = preset_text_config(preset);
  ClipTextModel model(config);
  randomize(model, seed);
  const std::string te = out + "/text_encoder";
  ::mkdir(te.c_str(), 0755);
  io::write_json_file(te + "/config.json", config.to_json());
  std::map<std::string, at::Tensor> tensors;
  for (const auto& p : model->named_parameters()) tensors.emplace(p.key(), p.value());
  io::write_safetensors(te + "/model.safetensors", tensors, {{"format", "pt"}});
  // SD 2.x's tokenizer pads with "!" (id 0), SD 1.x's with <|endoftext|>.
  write_clip_tokenizer_folder(default_clip_merges_path(), out + "/tokenizer", preset == "sd21" ? "!" : "<|endoftext|>");
  return {{"text_encoder", {"transformers", "CLIPTextModel"}}, {"tokenizer", {"transformers", "CLIPTokenizer"}}};
}

std::vector<std::string> text_run_components() { return {"text-encoder"}; }

std::optional<std::map<std::string, at::Tensor>> run_text_component(const std::string& component,
                                                                    const std::string& dir,
                                                                    const std::map<std::string, at::Tensor>& inputs,
                                                                    const LoadOptions& options) {
  if (component != "text-encoder") return std::nullopt;
  auto it = inputs.find("input_ids");
  if (it == inputs.end())
    throw ModelError("dinv model run --component text-encoder: the inputs have no tensor 'input_ids' [B, T]");
  ClipTextModel model = load_clip_text_model(dir, options);
  const ClipTextOutput out = model->forward(it->second);
  return std::map<std::string, at::Tensor>{{"last_hidden_state", out.last_hidden_state},
                                           {"penultimate_hidden_state", out.penultimate()}};
}

std::optional<std::string> describe_text_component(const std::string& dir, const std::string& component,
                                                   const LoadOptions&) {
  if (component == "text_encoder") {
    const std::string path = dir + "/text_encoder/config.json";
    const ClipTextConfig c = ClipTextConfig::from_json(detail::read_model_json(path), path);
    return "CLIPTextModel: " + std::to_string(c.num_hidden_layers) + " layers, width " + std::to_string(c.hidden_size) +
           ", " + std::to_string(c.num_attention_heads) + " heads, " + c.hidden_act + ", " +
           std::to_string(c.max_position_embeddings) + " positions, vocabulary " + std::to_string(c.vocab_size);
  }
  if (component == "tokenizer") {
    const ClipTokenizer t = ClipTokenizer::from_folder(dir + "/tokenizer");
    return "CLIPTokenizer: " + std::to_string(t.vocab_size()) + " tokens, max length " +
           std::to_string(t.max_length()) + ", pad '" + t.token(t.pad_id()) + "' (id " + std::to_string(t.pad_id()) +
           ")";
  }
  return std::nullopt;
}

std::optional<int> run_text_subcommand(const std::string& sub, const std::vector<std::string>& args) {
  if (sub == "tokenize") return tokenize_command(args);
  return std::nullopt;
}

std::vector<std::string> text_subcommand_usage() {
  return {"dinv model tokenize DIR TEXT... (DIR: a model folder or its tokenizer/)"};
}

}  // namespace dinv::sd
