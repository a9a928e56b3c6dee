#include "dinv/io/json.h"

#include <fstream>
#include <sstream>

#include "dinv/core/error.h"

namespace dinv::io {

Json parse_json(const std::string& text, const std::string& what) {
  try {
    return Json::parse(text);
  } catch (const Json::parse_error& e) {
    throw IoError(what + ": invalid JSON: " + e.what());
  }
}

Json read_json_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError(path + ": cannot open for reading");
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
    case Json::value_t::null: return "null";
    case Json::value_t::object: return "an object";
    case Json::value_t::array: return "a list";
    case Json::value_t::string: return "a string";
    case Json::value_t::boolean: return "a boolean";
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned: return "an integer";
    case Json::value_t::number_float: return "a number";
    default: return "an unsupported value";
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
  throw IoError(where + ": key '" + key + "': expected " + expected + ", found " + JsonObject::type_name(v) +
                " (" + v.dump() + ")");
}
}  // namespace

std::int64_t JsonObject::get_int(const std::string& key) const {
  const Json& v = at(key);
  if (v.is_number_integer()) return v.get<std::int64_t>();
  if (v.is_number_float()) {
    double d = v.get<double>();
    if (d == static_cast<double>(static_cast<std::int64_t>(d))) return static_cast<std::int64_t>(d);
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
    if (!e.is_number_integer()) type_error(where_, key, "a list of integers", v);
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
bool JsonObject::get_bool(const std::string& key, bool fallback) const {
  return has(key) ? get_bool(key) : fallback;
}
std::string JsonObject::get_string(const std::string& key, const std::string& fallback) const {
  return has(key) ? get_string(key) : fallback;
}

JsonObject JsonObject::object(const std::string& key) const {
  const Json& v = at(key);
  if (!v.is_object()) type_error(where_, key, "an object", v);
  return JsonObject(v, where_ + ": " + key);
}

}  // namespace dinv::io
