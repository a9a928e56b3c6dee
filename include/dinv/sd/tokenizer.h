// The CLIP byte-level BPE tokenizer of Stable Diffusion, read from a diffusers
// `tokenizer/` folder (vocab.json, merges.txt, tokenizer_config.json and/or
// special_tokens_map.json). It produces the ids transformers' CLIPTokenizer
// produces: special tokens matched in the raw text, NFC + whitespace collapsing +
// lower-casing, CLIP's pre-tokenisation, byte-level symbols, BPE by merge rank
// with `</w>` ending each word, then <|startoftext|> ... <|endoftext|>, truncated
// and padded to the folder's model_max_length (77) with its pad token.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <ATen/core/Tensor.h>

namespace dinv::sd {

struct TokenizerSettings {
  std::string bos_token = "<|startoftext|>";
  std::string eos_token = "<|endoftext|>";
  std::string pad_token = "<|endoftext|>";  // SD 2.x: "!"
  std::string unk_token = "<|endoftext|>";
  std::int64_t max_length = 77;
};

// One line of merges.txt: the pair of symbols merged at this rank. `line` (1-based,
// 0 when not from a file) is named in errors.
struct BpeMerge {
  std::string left, right;
  int line = 0;
};

struct TokenizedPrompt {
  std::vector<std::int64_t> ids;  // exactly max_length ids: bos, content, eos, pad...
  std::int64_t length = 0;        // bos + content + eos, without the padding
  bool truncated = false;         // content tokens were dropped to fit max_length
};

class ClipTokenizer {
 public:
  // Reads DIR/vocab.json, DIR/merges.txt and the special tokens / max length from
  // DIR/tokenizer_config.json or DIR/special_tokens_map.json. IoError naming the
  // file (and line for merges.txt) on anything malformed.
  static ClipTokenizer from_folder(const std::string& dir);
  // `merges` in rank order; `source` names where they came from in errors. ModelError
  // when a merge's parts or result are not in the vocabulary, or a special token is missing.
  ClipTokenizer(std::unordered_map<std::string, std::int64_t> vocab, const std::vector<BpeMerge>& merges,
                TokenizerSettings settings, const std::string& source = "tokenizer");
  ~ClipTokenizer();
  ClipTokenizer(ClipTokenizer&&) noexcept;
  ClipTokenizer& operator=(ClipTokenizer&&) noexcept;

  // Token ids of the text without special tokens, padding or truncation.
  std::vector<std::int64_t> encode_text(std::string_view text) const;
  // What SD pipelines feed the text encoder (padding="max_length", truncation=True).
  TokenizedPrompt encode(std::string_view text) const;
  // [B, max_length] int64; `truncated`, when given, receives one flag per prompt.
  at::Tensor encode_batch(const std::vector<std::string>& prompts, std::vector<bool>* truncated = nullptr) const;

  const std::string& token(std::int64_t id) const;  // ModelError for an unknown id
  std::int64_t vocab_size() const;
  std::int64_t max_length() const;
  std::int64_t bos_id() const;
  std::int64_t eos_id() const;
  std::int64_t pad_id() const;
  // "CLIPTokenizer: 49408 tokens, max length 77, pad '!' (id 0)" (for `dinv model info`).
  std::string describe() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Writes a complete diffusers `tokenizer/` folder (vocab.json, merges.txt,
// tokenizer_config.json, special_tokens_map.json) from OpenAI's CLIP merge list
// (`bpe_simple_vocab_16e6.txt.gz`, see src/sd/clip/README.md): 49,408
// tokens, the used 48,894 merges. `pad_token` is "<|endoftext|>" (SD 1.x) or "!" (SD 2.x).
void write_clip_tokenizer_folder(const std::string& merges_gz, const std::string& out_dir,
                                 const std::string& pad_token = "<|endoftext|>");

// The merge list shipped with dinv, from its data directory (io/data_files.h),
// checked against its sha256.
std::string default_clip_merges_path();

}  // namespace dinv::sd
