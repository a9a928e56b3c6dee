// Reading diffusers component configs: typed getters (io::JsonObject) plus the
// checks every architecture needs, with ModelErrors that name the file, the
// key and the value ("unet/config.json: key 'down_block_types' value
// 'SimpleCrossAttnDownBlock2D' is not supported by dinv (supported: ...)").
#pragma once

#include <set>
#include <string>
#include <vector>

#include "dinv/core/error.h"
#include "dinv/core/log.h"
#include "dinv/io/json.h"

namespace dinv::sd::detail {

// Caps on the sizes a component config may declare (Stable Diffusion's
// largest are 1280 channels, 4 blocks, 2 layers per block, 10 transformer
// layers in SDXL): generous, but far below what would make building the
// module ask for terabytes.
constexpr std::int64_t kMaxChannels = 16384;    // any channel count or embedding width
constexpr std::int64_t kMaxBlocks = 8;          // down / up blocks
constexpr std::int64_t kMaxLayers = 64;         // layers per block, transformer layers
constexpr std::int64_t kMaxSampleSize = 16384;  // sample_size
constexpr std::int64_t kMaxKernel = 31;         // conv_in_kernel / conv_out_kernel

// A component's config.json, with a read or parse failure as a ModelError
// (the model folder is what is wrong, not an arbitrary file).
inline io::Json read_model_json(const std::string& path) {
  try {
    return io::read_json_file(path);
  } catch (const IoError& e) {
    throw ModelError(e.what());
  }
}

class ConfigReader {
 public:
  ConfigReader(const io::Json& json, std::string where)
      : obj_(check_object(json, where), where), where_(std::move(where)) {}

  const std::string& where() const { return where_; }
  bool has(const std::string& key) const {
    seen_.insert(key);
    return obj_.has(key);
  }

  // Typed getters: a wrong type is a ModelError naming the key.
  template <typename F>
  auto get(const std::string& key, F&& getter) const {
    seen_.insert(key);
    try {
      return getter(obj_);
    } catch (const IoError& e) {
      throw ModelError(e.what());
    }
  }
  std::int64_t i(const std::string& key, std::int64_t fallback) const {
    return get(key, [&](const io::JsonObject& o) { return o.get_int(key, fallback); });
  }
  double d(const std::string& key, double fallback) const {
    return get(key, [&](const io::JsonObject& o) { return o.get_double(key, fallback); });
  }
  bool b(const std::string& key, bool fallback) const {
    return get(key, [&](const io::JsonObject& o) { return o.get_bool(key, fallback); });
  }
  std::string s(const std::string& key, const std::string& fallback) const {
    return get(key, [&](const io::JsonObject& o) { return o.get_string(key, fallback); });
  }
  std::vector<std::int64_t> int_list(const std::string& key, const std::vector<std::int64_t>& fallback) const {
    if (!has(key)) return fallback;
    return get(key, [&](const io::JsonObject& o) { return o.get_int_list(key); });
  }
  std::vector<std::string> string_list(const std::string& key, const std::vector<std::string>& fallback) const {
    if (!has(key)) return fallback;
    return get(key, [&](const io::JsonObject& o) { return o.get_string_list(key); });
  }
  // An int or a list of n ints ("attention_head_dim": 8 or [5, 10, 20, 20]).
  std::vector<std::int64_t> int_or_list(const std::string& key, std::int64_t fallback, size_t n) const {
    if (!has(key)) return std::vector<std::int64_t>(n, fallback);
    const io::Json& v = obj_.json().at(key);
    if (v.is_array()) {
      auto out = int_list(key, {});
      if (out.size() != n)
        fail(key, v, "needs one entry per down block (" + std::to_string(n) + "), found " + std::to_string(out.size()));
      return out;
    }
    return std::vector<std::int64_t>(n, i(key, fallback));
  }
  std::vector<bool> bool_or_list(const std::string& key, bool fallback, size_t n) const {
    if (!has(key)) return std::vector<bool>(n, fallback);
    const io::Json& v = obj_.json().at(key);
    if (v.is_array()) {
      std::vector<bool> out;
      for (const auto& e : v) {
        if (!e.is_boolean()) fail(key, v, "expected a boolean or a list of booleans");
        out.push_back(e.get<bool>());
      }
      if (out.size() != n) fail(key, v, "needs one entry per down block (" + std::to_string(n) + ")");
      return out;
    }
    return std::vector<bool>(n, b(key, fallback));
  }

  // The key must be absent, null, or equal to one of `allowed`.
  void require(const std::string& key, const std::vector<io::Json>& allowed) const {
    seen_.insert(key);
    if (!obj_.has(key)) return;
    const io::Json& v = obj_.json().at(key);
    for (const auto& a : allowed)
      if (v == a)
        return;
      else if (a.is_number() && v.is_number() && v.get<double>() == a.get<double>())
        return;
    std::string list;
    for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a.dump();
    fail(key, v, "is not supported by dinv (supported: " + (list.empty() ? "null" : list) + ")");
  }
  // One value from a set of strings.
  std::string choice(const std::string& key, const std::string& fallback,
                     const std::vector<std::string>& allowed) const {
    const std::string v = s(key, fallback);
    for (const auto& a : allowed)
      if (v == a) return v;
    std::string list;
    for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
    fail(key, io::Json(v), "is not supported by dinv (supported: " + list + ")");
  }

  // Sizes come from a file and become tensor shapes and divisors: each must
  // lie in [lo, hi] before anything divides by it or allocates with it.
  void bounded(const std::string& key, std::int64_t value, std::int64_t lo, std::int64_t hi) const {
    if (value < lo || value > hi)
      fail(key, obj_.json().contains(key) ? obj_.json().at(key) : io::Json(value),
           "is out of range: each value must be between " + std::to_string(lo) + " and " + std::to_string(hi));
  }
  void bounded(const std::string& key, const std::vector<std::int64_t>& values, std::int64_t lo,
               std::int64_t hi) const {
    for (auto v : values) bounded(key, v, lo, hi);
  }

  [[noreturn]] void fail(const std::string& key, const io::Json& value, const std::string& why) const {
    throw ModelError(where_ + ": key '" + key + "' value " + value.dump() + " " + why);
  }

  // Keys that no getter asked for: diffusers ignores unknown keys with a
  // warning, so do we (keys starting with '_' are diffusers bookkeeping).
  void warn_unused() const {
    for (auto it = obj_.json().begin(); it != obj_.json().end(); ++it)
      if (!seen_.count(it.key()) && !it.key().empty() && it.key()[0] != '_')
        log::warn(where_ + ": ignoring unknown key '" + it.key() + "'");
  }

 private:
  static const io::Json& check_object(const io::Json& json, const std::string& where) {
    if (!json.is_object()) throw ModelError(where + ": expected a JSON object");
    return json;
  }
  io::JsonObject obj_;
  std::string where_;
  mutable std::set<std::string> seen_;
};

}  // namespace dinv::sd::detail
