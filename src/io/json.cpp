#include "dinv/io/json.h"

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "dinv/core/error.h"

namespace dinv::io {

void check_json_depth(const std::string& text, const std::string& what) {
  // Brackets outside strings; the parser itself refuses unbalanced ones.
  std::size_t depth = 0;
  bool in_string = false, escaped = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxJsonDepth)
        throw IoError(what + ": JSON nested deeper than " + std::to_string(kMaxJsonDepth) + " levels (at byte " +
                      std::to_string(i) + ")");
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
}

Json parse_json(const std::string& text, const std::string& what) {
  check_json_depth(text, what);
  try {
    return Json::parse(text);
  } catch (const Json::exception& e) {  // parse_error, and out_of_range for numbers such as 2e505
    throw IoError(what + ": invalid JSON: " + e.what());
  }
}

Json read_json_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError(path + ": cannot open for reading");
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) throw IoError(path + ": not a regular file");
  const auto size = std::filesystem::file_size(path, ec);
  if (!ec && size > kMaxJsonFile)
    throw IoError(path + ": " + std::to_string(size) + " bytes, more than the " + std::to_string(kMaxJsonFile) +
                  " a JSON file may have");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw IoError(path + ": read error");
  return parse_json(ss.str(), path);
}

void write_json_file(const std::string& path, const Json& value) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw IoError(path + ": cannot open for writing");
  out << value.dump(2) << "\n";
  out.flush();
  if (!out) throw IoError(path + ": write error");
}

std::string canonical_json(const Json& value) { return value.dump(-1, ' ', false, Json::error_handler_t::strict); }

JsonObject::JsonObject(const Json& value, std::string where) : value_(&value), where_(std::move(where)) {
  if (!value.is_object()) throw IoError(where_ + ": expected a JSON object, found " + type_name(value));
}

std::string JsonObject::type_name(const Json& v) {
  switch (v.type()) {
    case Json::value_t::null:
      return "null";
    case Json::value_t::object:
      return "an object";
    case Json::value_t::array:
      return "a list";
    case Json::value_t::string:
      return "a string";
    case Json::value_t::boolean:
      return "a boolean";
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned:
      return "an integer";
    case Json::value_t::number_float:
      return "a number";
    default:
      return "an unsupported value";
  }
}

bool JsonObject::has(const std::string& key) const {
  auto it = value_->find(key);
  return it != value_->end() && !it->is_null();
}

const Json& JsonObject::at(const std::string& key) const {
  auto it = value_->find(key);
  if (it == value_->end()) throw IoError(where_ + ": missing key '" + key + "'");
  return *it;
}

namespace {
[[noreturn]] void type_error(const std::string& where, const std::string& key, const char* expected, const Json& v) {
  throw IoError(where + ": key '" + key + "': expected " + expected + ", found " + JsonObject::type_name(v) + " (" +
                v.dump() + ")");
}
}  // namespace

std::int64_t JsonObject::get_int(const std::string& key) const {
  const Json& v = at(key);
  if (v.is_number_unsigned() && v.get<std::uint64_t>() > static_cast<std::uint64_t>(INT64_MAX))
    type_error(where_, key, "an integer below 2^63", v);
  if (v.is_number_integer()) return v.get<std::int64_t>();
  if (v.is_number_float()) {
    // Range first: casting 1e30 to int64 is undefined.
    const double d = v.get<double>();
    if (std::isfinite(d) && std::fabs(d) < 9.2e18 && d == std::floor(d)) return static_cast<std::int64_t>(d);
  }
  type_error(where_, key, "an integer", v);
}

double JsonObject::get_double(const std::string& key) const {
  const Json& v = at(key);
  if (v.is_number()) return v.get<double>();
  type_error(where_, key, "a number", v);
}

bool JsonObject::get_bool(const std::string& key) const {
  const Json& v = at(key);
  if (v.is_boolean()) return v.get<bool>();
  type_error(where_, key, "a boolean", v);
}

std::string JsonObject::get_string(const std::string& key) const {
  const Json& v = at(key);
  if (v.is_string()) return v.get<std::string>();
  type_error(where_, key, "a string", v);
}

std::vector<std::int64_t> JsonObject::get_int_list(const std::string& key) const {
  const Json& v = at(key);
  if (!v.is_array()) type_error(where_, key, "a list of integers", v);
  std::vector<std::int64_t> out;
  for (const auto& e : v) {
    if (!e.is_number_integer() ||
        (e.is_number_unsigned() && e.get<std::uint64_t>() > static_cast<std::uint64_t>(INT64_MAX)))
      type_error(where_, key, "a list of integers", v);
    out.push_back(e.get<std::int64_t>());
  }
  return out;
}

std::vector<std::string> JsonObject::get_string_list(const std::string& key) const {
  const Json& v = at(key);
  if (!v.is_array()) type_error(where_, key, "a list of strings", v);
  std::vector<std::string> out;
  for (const auto& e : v) {
    if (!e.is_string()) type_error(where_, key, "a list of strings", v);
    out.push_back(e.get<std::string>());
  }
  return out;
}

std::int64_t JsonObject::get_int(const std::string& key, std::int64_t fallback) const {
  return has(key) ? get_int(key) : fallback;
}
double JsonObject::get_double(const std::string& key, double fallback) const {
  return has(key) ? get_double(key) : fallback;
}
bool JsonObject::get_bool(const std::string& key, bool fallback) const { return has(key) ? get_bool(key) : fallback; }
std::string JsonObject::get_string(const std::string& key, const std::string& fallback) const {
  return has(key) ? get_string(key) : fallback;
}

JsonObject JsonObject::object(const std::string& key) const {
  const Json& v = at(key);
  if (!v.is_object()) type_error(where_, key, "an object", v);
  return JsonObject(v, where_ + ": " + key);
}

}  // namespace dinv::io
