#include "dinv/sd/tokenizer.h"

#include <sys/stat.h>
#include <zlib.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <mutex>
#include <sstream>
#include <unordered_map>
#include <utility>
#include <vector>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "dinv/core/error.h"
#include "dinv/io/files.h"
#include "dinv/io/data_files.h"
#include "dinv/io/json.h"
#include "unicode.h"

namespace dinv::sd {
using unicode::CharClass;

namespace {

// POSIX rather than std::filesystem: the torch wheel's libtorch.so exports its
// own std::filesystem symbols, and calls into them crash.
bool is_directory(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool file_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

void make_directories(const std::string& path) {
  for (size_t slash = path.find('/', 1);; slash = path.find('/', slash + 1)) {
    const std::string prefix = path.substr(0, slash);
    if (!prefix.empty() && !is_directory(prefix) && ::mkdir(prefix.c_str(), 0755) != 0 && !is_directory(prefix))
      throw IoError("cannot create folder " + prefix);
    if (slash == std::string::npos) break;
  }
}

constexpr const char* kEndOfWord = "</w>";

// GPT-2's reversible byte -> printable unicode symbol table: printable Latin-1
// bytes stand for themselves, the others take code points 256, 257, ... in byte
// order. Returned in CLIP's vocabulary order (printable bytes first).
std::vector<std::pair<unsigned char, char32_t>> byte_symbols() {
  std::vector<std::pair<unsigned char, char32_t>> table;
  auto printable = [](int b) { return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE); };
  for (int b = 0; b < 256; ++b)
    if (printable(b)) table.emplace_back(static_cast<unsigned char>(b), static_cast<char32_t>(b));
  char32_t next = 256;
  for (int b = 0; b < 256; ++b)
    if (!printable(b)) table.emplace_back(static_cast<unsigned char>(b), next++);
  return table;
}

std::string utf8(char32_t cp) {
  std::string s;
  unicode::append_utf8(s, cp);
  return s;
}

std::unordered_map<std::string, std::int64_t> read_vocab(const std::string& path) {
  const nlohmann::json j = io::read_json_file(path);
  if (!j.is_object()) throw IoError(path + ": expected a JSON object {token: id}, found " + j.type_name());
  std::unordered_map<std::string, std::int64_t> vocab;
  vocab.reserve(j.size());
  for (const auto& [token, id] : j.items()) {
    if (!id.is_number_integer() || id.get<std::int64_t>() < 0)
      throw IoError(path + ": token '" + token + "' has id " + id.dump() + ", expected a non-negative integer");
    vocab.emplace(token, id.get<std::int64_t>());
  }
  return vocab;
}

std::vector<BpeMerge> parse_merges(const std::string& text, const std::string& where) {
  std::vector<BpeMerge> merges;
  std::istringstream in(text);
  std::string line;
  int number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (number == 1 && line.find("#version") != std::string::npos) continue;
    if (line.empty()) continue;
    const size_t space = line.find(' ');
    if (space == std::string::npos || space == 0 || space + 1 == line.size() ||
        line.find(' ', space + 1) != std::string::npos)
      throw IoError(where + ":" + std::to_string(number) + ": malformed merge '" + line +
                    "': expected two symbols separated by one space");
    merges.push_back({line.substr(0, space), line.substr(space + 1), number});
  }
  return merges;
}

// A special token is a string or {"content": ...} in the Hugging Face files.
std::optional<std::string> token_field(const nlohmann::json& j, const std::string& key) {
  if (!j.contains(key) || j[key].is_null()) return std::nullopt;
  const auto& v = j[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  return std::nullopt;
}

TokenizerSettings read_settings(const std::string& dir) {
  TokenizerSettings s;
  std::vector<nlohmann::json> sources;  // first found wins
  for (const char* name : {"tokenizer_config.json", "special_tokens_map.json"})
    if (file_exists(dir + "/" + name)) sources.push_back(io::read_json_file(dir + "/" + name));
  for (auto [key, field] : {std::pair{"bos_token", &s.bos_token},
                            {"eos_token", &s.eos_token},
                            {"pad_token", &s.pad_token},
                            {"unk_token", &s.unk_token}}) {
    for (const auto& j : sources)
      if (auto v = token_field(j, key)) {
        *field = *v;
        break;
      }
  }
  if (!sources.empty() && sources[0].contains("model_max_length")) {
    const auto& m = sources[0]["model_max_length"];
    // Folders saved without a limit carry a huge sentinel: CLIP's 77 positions apply then.
    if (m.is_number() && m.get<double>() >= 2 && m.get<double>() <= 1e6) s.max_length = m.get<std::int64_t>();
  }
  return s;
}

}  // namespace

struct ClipTokenizer::Impl {
  TokenizerSettings settings;
  std::unordered_map<std::string, std::int64_t> vocab;
  std::vector<std::string> id_to_token;
  std::int64_t byte_id[256] = {}, byte_eow_id[256] = {};
  std::unordered_map<std::uint64_t, std::pair<std::int32_t, std::int64_t>> merges;  // (a,b) -> (rank, ab)
  std::vector<std::pair<std::u32string, std::int64_t>> specials;                    // matched in the raw text
  std::int64_t bos = 0, eos = 0, pad = 0, unk = 0;
  mutable std::mutex cache_mutex;
  mutable std::unordered_map<std::string, std::vector<std::int64_t>> cache;  // word bytes -> ids

  static std::uint64_t pair_key(std::int64_t a, std::int64_t b) {
    return (static_cast<std::uint64_t>(a) << 32) | static_cast<std::uint64_t>(b);
  }

  std::int64_t id_of(const std::string& token, const std::string& what, const std::string& source) const {
    auto it = vocab.find(token);
    if (it == vocab.end()) throw ModelError(source + ": the vocabulary has no " + what + " '" + token + "'");
    return it->second;
  }

  std::int64_t symbol_id(const std::string& symbol) const {
    auto it = vocab.find(symbol);
    return it == vocab.end() ? unk : it->second;
  }

  // Byte-pair merges by rank: repeatedly merge every occurrence of the
  // lowest-ranked adjacent pair, as the reference BPE does.
  std::vector<std::int64_t> bpe(const std::string& word) const {
    std::vector<std::int64_t> symbols(word.size());
    for (size_t i = 0; i < word.size(); ++i) {
      const auto b = static_cast<unsigned char>(word[i]);
      symbols[i] = i + 1 == word.size() ? byte_eow_id[b] : byte_id[b];
    }
    while (symbols.size() > 1) {
      std::int32_t best_rank = std::numeric_limits<std::int32_t>::max();
      std::uint64_t best = 0;
      std::int64_t merged = -1;
      for (size_t i = 0; i + 1 < symbols.size(); ++i) {
        auto it = merges.find(pair_key(symbols[i], symbols[i + 1]));
        if (it != merges.end() && it->second.first < best_rank) {
          best_rank = it->second.first;
          best = it->first;
          merged = it->second.second;
        }
      }
      if (merged < 0) break;
      std::vector<std::int64_t> next;
      next.reserve(symbols.size());
      for (size_t i = 0; i < symbols.size(); ++i) {
        if (i + 1 < symbols.size() && pair_key(symbols[i], symbols[i + 1]) == best) {
          next.push_back(merged);
          ++i;
        } else {
          next.push_back(symbols[i]);
        }
      }
      symbols.swap(next);
    }
    return symbols;
  }

  void append_word(std::vector<std::int64_t>& ids, std::u32string_view piece) const {
    const std::string word = unicode::encode_utf8(piece);
    {
      std::lock_guard<std::mutex> lock(cache_mutex);
      auto it = cache.find(word);
      if (it != cache.end()) {
        ids.insert(ids.end(), it->second.begin(), it->second.end());
        return;
      }
    }
    std::vector<std::int64_t> word_ids = bpe(word);
    ids.insert(ids.end(), word_ids.begin(), word_ids.end());
    std::lock_guard<std::mutex> lock(cache_mutex);
    if (cache.size() < 200000) cache.emplace(word, std::move(word_ids));
  }

  // CLIP's pre-tokeniser, by hand:
  //   <|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
  // keeping the matches and dropping the rest (whitespace). The byte-level step
  // after it splits the two literal tags again into "<|", the name and "|>".
  void append_segment(std::vector<std::int64_t>& ids, std::u32string_view raw) const {
    const std::u32string text = unicode::lowercase(unicode::nfc(raw));
    std::vector<CharClass> cls(text.size());
    for (size_t i = 0; i < text.size(); ++i) cls[i] = unicode::char_class(text[i]);
    const std::u32string_view s(text);
    size_t i = 0;
    while (i < s.size()) {
      if (cls[i] == CharClass::space) {
        ++i;
        continue;
      }
      if (size_t n = literal_tag(s.substr(i))) {
        append_word(ids, s.substr(i, 2));
        append_word(ids, s.substr(i + 2, n - 4));
        append_word(ids, s.substr(i + n - 2, 2));
        i += n;
        continue;
      }
      size_t n = contraction(s.substr(i));
      if (n == 0) n = run_length(cls, i);
      append_word(ids, s.substr(i, n));
      i += n;
    }
  }

  static size_t literal_tag(std::u32string_view s) {
    for (std::u32string_view tag : {U"<|startoftext|>", U"<|endoftext|>"})
      if (s.substr(0, tag.size()) == tag) return tag.size();
    return 0;
  }

  static size_t contraction(std::u32string_view s) {
    if (s.size() < 2 || s[0] != U'\'') return 0;
    for (std::u32string_view c : {U"'s", U"'t", U"'re", U"'ve", U"'m", U"'ll", U"'d"})
      if (s.substr(0, c.size()) == c) return c.size();
    return 0;
  }

  // A letter run, one number, or a run of everything else but whitespace.
  static size_t run_length(const std::vector<CharClass>& cls, size_t i) {
    const CharClass c = cls[i];
    if (c == CharClass::number) return 1;
    size_t j = i + 1;
    while (j < cls.size() && cls[j] == c) ++j;
    return j - i;
  }

  // Leftmost-longest special token at `i`, if any: (length, id).
  std::pair<size_t, std::int64_t> special_at(std::u32string_view s, size_t i) const {
    std::pair<size_t, std::int64_t> best{0, -1};
    for (const auto& [tok, id] : specials)
      if (tok.size() > best.first && s.substr(i, tok.size()) == tok) best = {tok.size(), id};
    return best;
  }

  std::vector<std::int64_t> encode_text(std::string_view text) const {
    const std::u32string s = unicode::decode_utf8(text, "prompt");
    std::vector<std::int64_t> ids;
    size_t segment = 0;
    for (size_t i = 0; i < s.size();) {
      auto [len, id] = special_at(s, i);
      if (len == 0) {
        ++i;
        continue;
      }
      append_segment(ids, std::u32string_view(s).substr(segment, i - segment));
      ids.push_back(id);
      i += len;
      segment = i;
    }
    append_segment(ids, std::u32string_view(s).substr(segment));
    return ids;
  }
};

ClipTokenizer::ClipTokenizer(std::unordered_map<std::string, std::int64_t> vocab, const std::vector<BpeMerge>& merges,
                             TokenizerSettings settings, const std::string& source)
    : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.settings = std::move(settings);
  m.vocab = std::move(vocab);
  // Token ids index a table: a vocabulary maps its N tokens onto 0..N-1 (as
  // every CLIP vocab.json does); an id outside that range or used twice is a
  // damaged file, not a reason to allocate a table of any size.
  const auto n = static_cast<std::int64_t>(m.vocab.size());
  const std::string merges_name = "merges.txt";
  const std::string vocab_source =
      source.size() >= merges_name.size() &&
              source.compare(source.size() - merges_name.size(), merges_name.size(), merges_name) == 0
          ? source.substr(0, source.size() - merges_name.size()) + "vocab.json"
          : source;
  m.id_to_token.assign(static_cast<size_t>(n), std::string());
  for (const auto& [tok, id] : m.vocab) {
    if (id < 0 || id >= n)
      throw ModelError(vocab_source + ": vocabulary token '" + tok.substr(0, 64) + "' has id " + std::to_string(id) +
                       ", outside 0.." + std::to_string(n - 1) + " (the vocabulary has " + std::to_string(n) +
                       " tokens)");
    if (!m.id_to_token[static_cast<size_t>(id)].empty())
      throw ModelError(vocab_source + ": vocabulary ids repeat: '" + tok.substr(0, 64) + "' and '" +
                       m.id_to_token[static_cast<size_t>(id)].substr(0, 64) + "' both have id " + std::to_string(id));
    m.id_to_token[static_cast<size_t>(id)] = tok;
  }

  m.unk = m.id_of(m.settings.unk_token, "unknown token", source);
  m.bos = m.id_of(m.settings.bos_token, "start token", source);
  m.eos = m.id_of(m.settings.eos_token, "end token", source);
  m.pad = m.id_of(m.settings.pad_token, "pad token", source);
  if (m.settings.max_length < 2)
    throw ModelError(source + ": model_max_length must be at least 2 (start and end token), found " +
                     std::to_string(m.settings.max_length));
  for (const auto& [b, cp] : byte_symbols()) {
    m.byte_id[b] = m.symbol_id(utf8(cp));
    m.byte_eow_id[b] = m.symbol_id(utf8(cp) + kEndOfWord);
  }
  for (const std::string* tok :
       {&m.settings.bos_token, &m.settings.eos_token, &m.settings.pad_token, &m.settings.unk_token}) {
    std::u32string t = unicode::decode_utf8(*tok, source + " special token");
    if (std::none_of(m.specials.begin(), m.specials.end(), [&](const auto& s) { return s.first == t; }))
      m.specials.emplace_back(std::move(t), m.vocab.at(*tok));
  }

  m.merges.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const BpeMerge& mg = merges[rank];
    auto where = [&] {
      return source + (mg.line ? ":" + std::to_string(mg.line) : " merge #" + std::to_string(rank)) + ": ";
    };
    auto find = [&](const std::string& tok, const char* role) {
      auto it = m.vocab.find(tok);
      if (it == m.vocab.end())
        throw ModelError(where() + "the " + std::string(role) + " '" + tok + "' of merge '" + mg.left + " " + mg.right +
                         "' is not in vocab.json");
      return it->second;
    };
    const std::int64_t a = find(mg.left, "left part"), b = find(mg.right, "right part");
    const std::int64_t ab = find(mg.left + mg.right, "result");
    m.merges.emplace(Impl::pair_key(a, b), std::make_pair(static_cast<std::int32_t>(rank), ab));
  }
}

ClipTokenizer::~ClipTokenizer() = default;
ClipTokenizer::ClipTokenizer(ClipTokenizer&&) noexcept = default;
ClipTokenizer& ClipTokenizer::operator=(ClipTokenizer&&) noexcept = default;

ClipTokenizer ClipTokenizer::from_folder(const std::string& dir) {
  if (!is_directory(dir)) throw IoError("tokenizer folder " + dir + " does not exist");
  auto vocab = read_vocab(dir + "/vocab.json");
  const std::string merges_path = dir + "/merges.txt";
  auto merges = parse_merges(io::read_text_file(merges_path), merges_path);
  return ClipTokenizer(std::move(vocab), merges, read_settings(dir), merges_path);
}

std::vector<std::int64_t> ClipTokenizer::encode_text(std::string_view text) const { return impl_->encode_text(text); }

TokenizedPrompt ClipTokenizer::encode(std::string_view text) const {
  const Impl& m = *impl_;
  std::vector<std::int64_t> content = m.encode_text(text);
  const auto room = static_cast<size_t>(m.settings.max_length - 2);
  TokenizedPrompt out;
  out.truncated = content.size() > room;
  if (out.truncated) content.resize(room);
  out.ids.reserve(static_cast<size_t>(m.settings.max_length));
  out.ids.push_back(m.bos);
  out.ids.insert(out.ids.end(), content.begin(), content.end());
  out.ids.push_back(m.eos);
  out.length = static_cast<std::int64_t>(out.ids.size());
  out.ids.resize(static_cast<size_t>(m.settings.max_length), m.pad);
  return out;
}

at::Tensor ClipTokenizer::encode_batch(const std::vector<std::string>& prompts, std::vector<bool>* truncated) const {
  const std::int64_t n = static_cast<std::int64_t>(prompts.size()), len = max_length();
  at::Tensor ids = at::empty({n, len}, at::kLong);
  auto* data = ids.data_ptr<std::int64_t>();
  if (truncated) truncated->assign(prompts.size(), false);
  for (std::int64_t i = 0; i < n; ++i) {
    TokenizedPrompt t = encode(prompts[static_cast<size_t>(i)]);
    std::copy(t.ids.begin(), t.ids.end(), data + i * len);
    if (truncated) (*truncated)[static_cast<size_t>(i)] = t.truncated;
  }
  return ids;
}

const std::string& ClipTokenizer::token(std::int64_t id) const {
  if (id < 0 || id >= static_cast<std::int64_t>(impl_->id_to_token.size()) ||
      impl_->id_to_token[static_cast<size_t>(id)].empty())
    throw ModelError("token id " + std::to_string(id) + " is not in the vocabulary (" + std::to_string(vocab_size()) +
                     " tokens)");
  return impl_->id_to_token[static_cast<size_t>(id)];
}

std::int64_t ClipTokenizer::vocab_size() const { return static_cast<std::int64_t>(impl_->vocab.size()); }
std::int64_t ClipTokenizer::max_length() const { return impl_->settings.max_length; }
std::int64_t ClipTokenizer::bos_id() const { return impl_->bos; }
std::int64_t ClipTokenizer::eos_id() const { return impl_->eos; }
std::int64_t ClipTokenizer::pad_id() const { return impl_->pad; }

std::string ClipTokenizer::describe() const {
  return "CLIPTokenizer: " + std::to_string(vocab_size()) + " tokens, max length " + std::to_string(max_length()) +
         ", pad '" + token(pad_id()) + "' (id " + std::to_string(pad_id()) + ")";
}

// ---------------------------------------------------------------------------
// Building a tokenizer/ folder from OpenAI's merge list.

namespace {

constexpr size_t kClipMergeCount = 49152 - 256 - 2;

std::string read_gzip(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) throw IoError("cannot open CLIP merges " + path + ": file missing or unreadable");
  std::string out;
  char buf[1 << 16];
  int n = 0;
  while ((n = gzread(f, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  int err = Z_OK;
  const std::string message = n < 0 ? gzerror(f, &err) : "";
  gzclose(f);
  if (n < 0) throw IoError("CLIP merges " + path + ": corrupt gzip data (" + message + ")");
  return out;
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  if (!out.flush()) throw IoError("cannot write " + path);
}

}  // namespace

void write_clip_tokenizer_folder(const std::string& merges_gz, const std::string& out_dir,
                                 const std::string& pad_token) {
  std::vector<BpeMerge> all = parse_merges(read_gzip(merges_gz), merges_gz);
  if (all.size() < kClipMergeCount)
    throw IoError(merges_gz + ": expected at least " + std::to_string(kClipMergeCount) + " merges (CLIP's), found " +
                  std::to_string(all.size()));
  all.resize(kClipMergeCount);

  // vocab.json in id order. Kept as (token, id) pairs with an index: an
  // ordered_json object finds keys by linear search, quadratic over 49,408.
  std::vector<std::pair<std::string, std::int64_t>> vocab;
  std::unordered_map<std::string, std::size_t> position;
  std::int64_t next = 0;
  const auto add = [&](const std::string& token) {
    const auto [it, added] = position.emplace(token, vocab.size());
    if (added)
      vocab.emplace_back(token, next++);
    else
      vocab[it->second].second = next++;  // a token made twice keeps its place and takes the later id
  };
  const auto symbols = byte_symbols();
  for (const auto& [b, cp] : symbols) add(utf8(cp));
  for (const auto& [b, cp] : symbols) add(utf8(cp) + kEndOfWord);
  std::string merges_txt = "#version: 0.2\n";
  for (const BpeMerge& mg : all) {
    add(mg.left + mg.right);
    merges_txt += mg.left + " " + mg.right + "\n";
  }
  add("<|startoftext|>");
  add("<|endoftext|>");
  std::string vocab_json = "{";
  for (const auto& [token, id] : vocab)
    vocab_json += (vocab_json.size() > 1 ? "," : "") + nlohmann::json(token).dump() + ":" + std::to_string(id);
  vocab_json += "}";

  const nlohmann::ordered_json specials = {{"bos_token", "<|startoftext|>"},
                                           {"eos_token", "<|endoftext|>"},
                                           {"pad_token", pad_token},
                                           {"unk_token", "<|endoftext|>"}};
  nlohmann::ordered_json config = specials;
  config["model_max_length"] = 77;
  config["do_lower_case"] = true;
  config["add_prefix_space"] = false;
  config["errors"] = "replace";
  config["clean_up_tokenization_spaces"] = true;
  config["tokenizer_class"] = "CLIPTokenizer";

  make_directories(out_dir);
  write_file(out_dir + "/vocab.json", vocab_json);
  write_file(out_dir + "/merges.txt", merges_txt);
  write_file(out_dir + "/tokenizer_config.json", config.dump(2) + "\n");
  write_file(out_dir + "/special_tokens_map.json", specials.dump(2) + "\n");
}

std::string default_clip_merges_path() { return io::data_file_path(io::kClipMerges); }

}  // namespace dinv::sd
