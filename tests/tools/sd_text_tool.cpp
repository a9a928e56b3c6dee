// Test driver for the CLIP tokenizer and text encoder: the parity tests feed it
// prompts / token ids and compare its answers with transformers'.
//   dinv_sd_text make-tokenizer OUT_DIR PAD_TOKEN
//   dinv_sd_text tokenize TOKENIZER_DIR PROMPTS.json OUT.json
//     PROMPTS.json: a JSON list of strings; OUT.json: {"ids": [[...]...],
//     "truncated": [...], "seconds": time to tokenise them all, cold cache}
//   dinv_sd_text encode TEXT_ENCODER_DIR IN.safetensors OUT.safetensors
//     (TEXT_ENCODER_DIR: a text_encoder/ folder, e.g. as transformers saves it)
//     IN: input_ids [B, T]; OUT: last_hidden_state, penultimate_hidden_state
//     (hidden_states[-2]) and clip_skip_1 (final_layer_norm of it)
//   dinv_sd_text encode-prompts TOKENIZER_DIR TEXT_ENCODER_DIR PROMPTS.json last|penultimate OUT.safetensors
//     OUT: conditioning [B, 77, D]
#include <chrono>
#include <fstream>
#include <iostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "dinv/core/error.h"
#include "dinv/io/safetensors.h"
#include "dinv/sd/clip_text.h"
#include "dinv/sd/tokenizer.h"

using namespace dinv;

namespace {

int make_tokenizer(int argc, char** argv) {
  if (argc != 4) throw ConfigError("usage: dinv_sd_text make-tokenizer OUT_DIR PAD_TOKEN");
  sd::write_clip_tokenizer_folder(sd::default_clip_merges_path(), argv[2], argv[3]);
  return 0;
}

int tokenize(int argc, char** argv) {
  if (argc != 5) throw ConfigError("usage: dinv_sd_text tokenize TOKENIZER_DIR PROMPTS.json OUT.json");
  std::ifstream in(argv[3]);
  const std::vector<std::string> prompts = nlohmann::json::parse(in).get<std::vector<std::string>>();
  const auto start = std::chrono::steady_clock::now();
  const sd::ClipTokenizer tokenizer = sd::ClipTokenizer::from_folder(argv[2]);
  const auto loaded = std::chrono::steady_clock::now();
  nlohmann::json ids = nlohmann::json::array(), truncated = nlohmann::json::array();
  for (const std::string& p : prompts) {
    sd::TokenizedPrompt t = tokenizer.encode(p);
    ids.push_back(t.ids);
    truncated.push_back(t.truncated);
  }
  const auto done = std::chrono::steady_clock::now();
  nlohmann::json out = {{"ids", ids},
                        {"truncated", truncated},
                        {"load_seconds", std::chrono::duration<double>(loaded - start).count()},
                        {"seconds", std::chrono::duration<double>(done - loaded).count()}};
  std::ofstream(argv[4]) << out.dump();
  return 0;
}

sd::ClipTextModel load_encoder(const std::string& folder) {
  const size_t slash = folder.find_last_of('/');
  if (slash == std::string::npos) return sd::load_clip_text_model(".", {}, folder);
  return sd::load_clip_text_model(folder.substr(0, slash), {}, folder.substr(slash + 1));
}

int encode(int argc, char** argv) {
  if (argc != 5) throw ConfigError("usage: dinv_sd_text encode TEXT_ENCODER_DIR IN.safetensors OUT.safetensors");
  sd::ClipTextModel model = load_encoder(argv[2]);
  const io::SafetensorsFile in(argv[3]);
  torch::NoGradGuard no_grad;
  const sd::ClipTextOutput out = model->forward(in.tensor("input_ids"));
  io::write_safetensors(argv[4], {{"last_hidden_state", out.last_hidden_state},
                                  {"penultimate_hidden_state", out.penultimate()},
                                  {"clip_skip_1", model->final_layer_norm(out.penultimate())}});
  return 0;
}

int encode_prompts(int argc, char** argv) {
  if (argc != 7)
    throw ConfigError("usage: dinv_sd_text encode-prompts TOKENIZER_DIR TEXT_ENCODER_DIR PROMPTS.json LAYER OUT");
  const sd::ClipTokenizer tokenizer = sd::ClipTokenizer::from_folder(argv[2]);
  sd::ClipTextModel model = load_encoder(argv[3]);
  std::ifstream in(argv[4]);
  const auto prompts = nlohmann::json::parse(in).get<std::vector<std::string>>();
  const at::Tensor c = sd::encode_prompts(tokenizer, model, prompts, sd::text_layer_from_string(argv[5]));
  io::write_safetensors(argv[6], {{"conditioning", c}});
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string cmd = argc > 1 ? argv[1] : "";
  try {
    if (cmd == "make-tokenizer") return make_tokenizer(argc, argv);
    if (cmd == "tokenize") return tokenize(argc, argv);
    if (cmd == "encode") return encode(argc, argv);
    if (cmd == "encode-prompts") return encode_prompts(argc, argv);
    std::cerr << "usage: dinv_sd_text make-tokenizer|tokenize|encode|encode-prompts ...\n";
    return 2;
  } catch (const Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return static_cast<int>(e.exit_code());
  }
}
