// JSON files (nlohmann-json behind a small helper): reading a file with errors
// that name it, and typed getters whose errors name the key and the type that
// was expected. Model configs (config.json, model_index.json), safetensors
// headers and the CLI use these.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace dinv::io {

using Json = nlohmann::json;

// Caps on JSON input. Nesting: the parser is iterative, but copying, dumping
// and comparing a value recurse once per level, so a file of lists nested
// 200,000 deep exhausts the stack after parsing; real files (model configs,
// tokenizers, safetensors headers) nest fewer than 10 levels. Size: a
// tokenizer.json is a few MB.
constexpr std::size_t kMaxJsonDepth = 128;
constexpr std::uintmax_t kMaxJsonFile = 256u << 20;  // 256 MiB

// IoError "WHAT: JSON nested deeper than 128 levels (at byte N)".
void check_json_depth(const std::string& text, const std::string& what);
// Parse a file; IoError "FILE: cannot open" / "FILE: invalid JSON: ..." on
// failure, and when it exceeds the caps above (every JSON file dinv reads
// goes through here or parse_json).
Json read_json_file(const std::string& path);
// Parse text; IoError naming `what` (a file name or "safetensors header of FILE").
Json parse_json(const std::string& text, const std::string& what);
// Write with 2-space indentation and a trailing newline (IoError on failure).
void write_json_file(const std::string& path, const Json& value);
// Canonical text: keys sorted (nlohmann's objects are sorted maps), no
// whitespace, numbers in their shortest round-trip form. Used for fingerprints.
std::string canonical_json(const Json& value);

// Typed access to an object's keys. `where` names the object for messages
// ("unet/config.json"). Errors are IoError: "unet/config.json: key 'in_channels':
// expected an integer, found a string".
class JsonObject {
 public:
  JsonObject(const Json& value, std::string where);

  const Json& json() const { return *value_; }
  const std::string& where() const { return where_; }
  bool has(const std::string& key) const;  // present and not null

  const Json& at(const std::string& key) const;  // must exist
  std::int64_t get_int(const std::string& key) const;
  double get_double(const std::string& key) const;
  bool get_bool(const std::string& key) const;
  std::string get_string(const std::string& key) const;
  std::vector<std::int64_t> get_int_list(const std::string& key) const;
  std::vector<std::string> get_string_list(const std::string& key) const;

  // With a default used when the key is absent or null.
  std::int64_t get_int(const std::string& key, std::int64_t fallback) const;
  double get_double(const std::string& key, double fallback) const;
  bool get_bool(const std::string& key, bool fallback) const;
  std::string get_string(const std::string& key, const std::string& fallback) const;

  JsonObject object(const std::string& key) const;  // nested object

  // "expected an integer, found a string"-style type names.
  static std::string type_name(const Json& v);

 private:
  const Json* value_;
  std::string where_;
};

}  // namespace dinv::io
