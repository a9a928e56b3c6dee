// Test driver for the CLIP tokenizer and text encoder: the parity tests feed it
// prompts / token ids and compare its answers with transformers'.
//   dinv_sd_text make-tokenizer OUT_DIR PAD_TOKEN
//   dinv_sd_text tokenize TOKENIZER_DIR PROMPTS.json OUT.json
//     PROMPTS.json: a JSON list of strings; OUT.json: {"ids": [[...]...],
//     "truncated": [...], "seconds": time to tokenise them all, cold cache}
#include <chrono>
#include <fstream>
#include <iostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "dinv/core/error.h"
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

}  // namespace

int main(int argc, char** argv) {
  const std::string cmd = argc > 1 ? argv[1] : "";
  try {
    if (cmd == "make-tokenizer") return make_tokenizer(argc, argv);
    if (cmd == "tokenize") return tokenize(argc, argv);
    std::cerr << "usage: dinv_sd_text make-tokenizer|tokenize ...\n";
    return 2;
  } catch (const Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return static_cast<int>(e.exit_code());
  }
}
