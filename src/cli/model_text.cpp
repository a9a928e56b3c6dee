// The text side of `dinv model`: `dinv model tokenize`, the CLIP text encoder
// as a `run` component, and the text components' lines in `info`.
#include "dinv/cli/model_text.h"

#include <sys/stat.h>

#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "dinv/core/error.h"
#include "dinv/core/log.h"
#include "dinv/sd/clip_text.h"
#include "dinv/sd/loader.h"
#include "dinv/sd/tokenizer.h"

namespace dinv::cli {

namespace {

bool is_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// The tokenizer folder of a pipeline folder, or DIR itself when it is one.
std::string tokenizer_dir(const std::string& dir) { return is_file(dir + "/vocab.json") ? dir : dir + "/tokenizer"; }

std::string join_ids(const std::vector<std::int64_t>& ids, std::int64_t count) {
  std::ostringstream s;
  for (std::int64_t i = 0; i < count; ++i) s << (i ? " " : "") << ids[static_cast<size_t>(i)];
  return s.str();
}

}  // namespace

int model_tokenize(const std::vector<std::string>& args) {
  if (args.size() < 2)
    throw ConfigError("dinv model tokenize: expected a model (or tokenizer) folder and one or more texts");
  const sd::ClipTokenizer tokenizer = sd::ClipTokenizer::from_folder(tokenizer_dir(args[0]));
  for (size_t i = 1; i < args.size(); ++i) {
    const sd::TokenizedPrompt t = tokenizer.encode(args[i]);
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

std::map<std::string, at::Tensor> run_text_encoder(const std::string& dir,
                                                   const std::map<std::string, at::Tensor>& inputs,
                                                   const sd::LoadOptions& options) {
  auto it = inputs.find("input_ids");
  if (it == inputs.end())
    throw ModelError("dinv model run --component text-encoder: the inputs have no tensor 'input_ids' [B, T]");
  sd::ClipTextModel model = sd::load_clip_text_model(dir, options);
  const sd::ClipTextOutput out = model->forward(it->second);
  return {{"last_hidden_state", out.last_hidden_state}, {"penultimate_hidden_state", out.penultimate()}};
}

std::optional<std::string> describe_text_component(const std::string& dir, const std::string& component) {
  if (component == "text_encoder") {
    return sd::ClipTextConfig::from_file(dir + "/text_encoder/config.json").describe();
  }
  if (component == "tokenizer") return sd::ClipTokenizer::from_folder(dir + "/tokenizer").describe();
  return std::nullopt;
}

}  // namespace dinv::cli
