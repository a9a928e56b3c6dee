// Reading diffusers component configs: typed getters (io::JsonObject) plus the
// checks every architecture needs, with ModelErrors that name the file, the
// key and the value ("unet/config.json: key 'down_block_types' value
// 'SimpleCrossAttnDownBlock2D' is not supported by dinv (supported: ...)").
#pragma once

#include <functional>
#include <optional>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

#include "dinv/core/error.h"
#include "dinv/core/log.h"
#include "dinv/io/json.h"
#include "dinv/sd/layers.h"

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
  // Present with the value null (has() is false for it).
  bool is_null(const std::string& key) const {
    seen_.insert(key);
    return obj_.json().contains(key) && obj_.json().at(key).is_null();
  }
  // The value as written, or `fallback` when absent (for error messages).
  io::Json raw(const std::string& key, const io::Json& fallback = io::Json()) const {
    return obj_.json().contains(key) ? obj_.json().at(key) : fallback;
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
  // The typed getter for T, with `fallback` when the key is absent or null.
  template <typename T>
  T value(const std::string& key, const T& fallback) const {
    if constexpr (std::is_same_v<T, std::int64_t>)
      return i(key, fallback);
    else if constexpr (std::is_same_v<T, double>)
      return d(key, fallback);
    else if constexpr (std::is_same_v<T, bool>)
      return b(key, fallback);
    else if constexpr (std::is_same_v<T, std::string>)
      return s(key, fallback);
    else if constexpr (std::is_same_v<T, std::vector<std::int64_t>>)
      return int_list(key, fallback);
    else
      return string_list(key, fallback);
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
        log::warn_job(where_ + ": ignoring unknown key '" + it.key() + "'");
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

// ---- declarative config tables ------------------------------------------------------
//
// A component's config is read from a table, one entry per key:
//   field("in_channels", &UNetConfig::in_channels, between{1, kMaxChannels}),
// reads the key into the member (a key absent from the file, or null, keeps
// the member's initial value: the defaults are the struct's, diffusers'
// defaults) and applies the checks in turn. Entries that need more than that
// (one value per block, a null that means "none") are functions of the same type.

template <typename Config>
using Field = std::function<void(const ConfigReader&, Config&)>;

template <typename Config>
void read_fields(const ConfigReader& r, Config& c, const std::vector<Field<Config>>& fields) {
  for (const auto& f : fields) f(r, c);
}

// A diffusers component config (Config has a `json` member): the table, then
// `check_shapes` (what the architecture needs of keys taken together), then a
// warning for each unknown key.
template <typename Config>
Config read_component(const io::Json& json, const std::string& where, const std::vector<Field<Config>>& fields,
                      void (*check_shapes)(const ConfigReader&, Config&)) {
  ConfigReader r(json, where);
  Config c;
  c.json = json;
  read_fields(r, c, fields);
  check_shapes(r, c);
  r.warn_unused();
  return c;
}

template <typename Config, typename T, typename... Checks>
Field<Config> field(const char* key, T Config::*member, Checks... checks) {
  return [=](const ConfigReader& r, Config& c) {
    c.*member = r.value(key, c.*member);
    (checks(r, key, c.*member), ...);
  };
}

// An optional member: set only when the key is present (and not null).
template <typename Config, typename T, typename... Checks>
Field<Config> field(const char* key, std::optional<T> Config::*member, Checks... checks) {
  return [=](const ConfigReader& r, Config& c) {
    if (!r.has(key)) return;
    c.*member = r.value(key, T{});
    (checks(r, key, *(c.*member)), ...);
  };
}

// The key must be absent, null or one of `allowed` (features dinv does not build).
template <typename Config>
Field<Config> only(const char* key, std::vector<io::Json> allowed) {
  return [=](const ConfigReader& r, Config&) { r.require(key, allowed); };
}

// Keys that are read and not used (inference needs nothing from them); a
// number where `number` is set (dropout: any value is the identity at inference).
template <typename Config>
Field<Config> ignored(const char* key, bool number = false) {
  return [=](const ConfigReader& r, Config&) {
    if (number)
      r.d(key, 0.0);
    else
      r.has(key);
  };
}

// `_class_name`, when present, must be `name`.
template <typename Config>
Field<Config> class_name(std::string name) {
  return [=](const ConfigReader& r, Config&) {
    if (!r.has("_class_name")) return;
    const std::string cls = r.s("_class_name", "");
    if (cls != name) r.fail("_class_name", io::Json(cls), "is not supported by dinv (supported: \"" + name + "\")");
  };
}

// An int, or a list whose first entry is used (diffusers writes sample_size
// either way).
template <typename Config, typename... Checks>
Field<Config> int_or_first(const char* key, std::int64_t Config::*member, Checks... checks) {
  return [=](const ConfigReader& r, Config& c) {
    if (r.has(key)) {
      const io::Json v = r.raw(key);
      c.*member = v.is_array() && !v.empty() && v[0].is_number_integer() ? v[0].get<std::int64_t>() : r.i(key, 0);
    }
    (checks(r, key, c.*member), ...);
  };
}

// An activation name (diffusers' get_activation), parsed here once: the
// models switch on the enum.
template <typename Config>
Field<Config> activation(const char* key, Activation Config::*member) {
  return [=](const ConfigReader& r, Config& c) {
    if (!r.has(key)) return;
    const std::string name = r.s(key, "");
    if (auto a = activation_from_name(name))
      c.*member = *a;
    else
      r.fail(key, io::Json(name), "is not supported by dinv (supported: " + activation_names() + ")");
  };
}
// nullopt when absent or null.
template <typename Config>
Field<Config> activation(const char* key, std::optional<Activation> Config::*member) {
  return [=](const ConfigReader& r, Config& c) {
    if (!r.has(key)) return;
    const std::string name = r.s(key, "");
    c.*member = activation_from_name(name);
    if (!(c.*member))
      r.fail(key, io::Json(name), "is not supported by dinv (supported: null, " + activation_names() + ")");
  };
}

// ---- checks (called with the reader, the key and the value read) ----

// Sizes come from a file and become tensor shapes and divisors: each must lie
// in [lo, hi] before anything divides by it or allocates with it.
struct between {
  std::int64_t lo, hi;
  void operator()(const ConfigReader& r, const std::string& key, std::int64_t v) const { r.bounded(key, v, lo, hi); }
  void operator()(const ConfigReader& r, const std::string& key, const std::vector<std::int64_t>& v) const {
    r.bounded(key, v, lo, hi);
  }
};

// A string, or each string of a list, from a closed set.
struct one_of {
  std::vector<std::string> allowed;
  void operator()(const ConfigReader& r, const std::string& key, const std::string& v) const {
    for (const auto& a : allowed)
      if (v == a) return;
    std::string list;
    for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + io::Json(a).dump();
    r.fail(key, io::Json(v), "is not supported by dinv (supported: " + list + ")");
  }
  void operator()(const ConfigReader& r, const std::string& key, const std::vector<std::string>& v) const {
    for (const auto& e : v) (*this)(r, key, e);
  }
};

struct not_empty {
  template <typename T>
  void operator()(const ConfigReader& r, const std::string& key, const std::vector<T>& v) const {
    if (v.empty()) r.fail(key, r.raw(key), "must not be empty");
  }
};

// A list of at most `max` blocks.
struct max_blocks {
  std::int64_t max;
  template <typename T>
  void operator()(const ConfigReader& r, const std::string& key, const std::vector<T>& v) const {
    if (v.size() > static_cast<size_t>(max))
      r.fail(key, r.raw(key), "has more than " + std::to_string(max) + " blocks");
  }
};

struct odd {
  void operator()(const ConfigReader& r, const std::string& key, std::int64_t v) const {
    if (v % 2 == 0 || v < 1) r.fail(key, io::Json(v), "must be a positive odd number");
  }
};

}  // namespace dinv::sd::detail
