#include "dinv/core/config.h"

#include <algorithm>
#include <charconv>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/program_options.hpp>

#include "dinv/core/error.h"

namespace po = boost::program_options;

namespace dinv {
namespace {

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos) return "";
  const auto e = s.find_last_not_of(" \t\r");
  return s.substr(b, e - b + 1);
}

// Shortest text that reads back as the same double.
std::string format_real(double v) {
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, end);
}

std::string kind_name(ValueKind k) {
  switch (k) {
    case ValueKind::integer:
      return "an integer";
    case ValueKind::real:
      return "a number";
    case ValueKind::boolean:
      return "true or false";
    case ValueKind::string:
      return "a string";
  }
  return "?";
}

std::size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diag = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] != b[j - 1] ? 1 : 0)});
      diag = up;
    }
  }
  return row[b.size()];
}

std::string section_of(const std::string& key) { return key.substr(0, key.find('.')); }

// Typed value -> canonical text.
std::string canonical(const OptionSpec& spec, const boost::any& v) {
  switch (spec.kind) {
    case ValueKind::integer:
      return std::to_string(boost::any_cast<std::int64_t>(v));
    case ValueKind::real:
      return format_real(boost::any_cast<double>(v));
    case ValueKind::boolean:
      return boost::any_cast<bool>(v) ? "true" : "false";
    case ValueKind::string:
      return boost::any_cast<std::string>(v);
  }
  return "";
}

[[noreturn]] void fail_value(const OptionSpec& spec, const std::string& text, const std::string& origin,
                             const std::string& why) {
  throw ConfigError(origin + ": " + spec.key + " = '" + text + "' " + why + " (allowed: " + spec.allowed() + ")");
}

// Parse `text` with the Boost semantic of the key, then check bounds/choices.
boost::any parse_value(const OptionSpec& spec, const po::options_description& desc, const std::string& text,
                       const std::string& origin) {
  // Boost's conversion is quadratic in the length of the text (a 4 MB number
  // takes minutes): refuse long values before converting them.
  const std::size_t limit = spec.kind == ValueKind::string ? kMaxConfigValue : kMaxNumberText;
  if (text.size() > limit)
    throw ConfigError(origin + ": " + spec.key + " has a value of " + std::to_string(text.size()) +
                      " characters, more than the " + std::to_string(limit) + " allowed for " + kind_name(spec.kind) +
                      " (allowed: " + spec.allowed() + ")");
  boost::any v;
  try {
    desc.find(spec.key, false).semantic()->parse(v, {text}, true);
  } catch (const po::error&) {
    fail_value(spec, text, origin, "is not " + kind_name(spec.kind));
  } catch (const std::logic_error&) {  // Boost's UTF-8 conversion: "character conversion failed"
    throw ConfigError(origin + ": " + spec.key + " is not valid UTF-8 text (allowed: " + spec.allowed() + ")");
  }
  if (spec.kind == ValueKind::integer || spec.kind == ValueKind::real) {
    const double x = spec.kind == ValueKind::integer ? static_cast<double>(boost::any_cast<std::int64_t>(v))
                                                     : boost::any_cast<double>(v);
    if (std::isnan(x) || std::isinf(x)) fail_value(spec, text, origin, "is not a finite number");
    if (spec.min && (spec.min_exclusive ? !(x > *spec.min) : !(x >= *spec.min)))
      fail_value(spec, text, origin, "is out of range");
    if (spec.max && !(x <= *spec.max)) fail_value(spec, text, origin, "is out of range");
  }
  if (spec.kind == ValueKind::string) {
    const auto& s = boost::any_cast<const std::string&>(v);
    if (!spec.choices.empty() && std::find(spec.choices.begin(), spec.choices.end(), s) == spec.choices.end())
      fail_value(spec, text, origin, "is not one of the choices");
    if (!spec.allow_empty && s.empty()) fail_value(spec, text, origin, "must not be empty");
  }
  return v;
}

[[noreturn]] void fail_unknown(const ConfigSchema& schema, const std::string& key, const std::string& origin) {
  std::string msg = origin + ": unknown configuration key '" + key + "'";
  const auto near = schema.closest(key);
  if (!near.empty()) {
    msg += "; did you mean ";
    for (std::size_t i = 0; i < near.size(); ++i) msg += (i ? ", " : "") + near[i];
    msg += "?";
  }
  msg += " ('dinv <command> --help' lists every key)";
  throw ConfigError(msg);
}

}  // namespace

// ---------------------------------------------------------------- OptionSpec

std::string OptionSpec::allowed() const {
  std::string s = kind_name(kind);
  if (!choices.empty()) {
    s = "one of";
    for (std::size_t i = 0; i < choices.size(); ++i) s += (i ? ", " : " ") + choices[i];
  }
  auto num = [&](double v) {
    return kind == ValueKind::integer ? std::to_string(static_cast<std::int64_t>(v)) : format_real(v);
  };
  if (min) s += std::string(min_exclusive ? " > " : " >= ") + num(*min);
  if (max) s += (min ? " and <= " : " <= ") + num(*max);
  if (kind == ValueKind::string && !allow_empty && choices.empty()) s += ", not empty";
  return s;
}

// ------------------------------------------------------------- OptionBuilder

OptionSpec& OptionBuilder::spec() { return schema_.specs_[index_]; }
OptionBuilder& OptionBuilder::min(double v) {
  spec().min = v;
  spec().min_exclusive = false;
  return *this;
}
OptionBuilder& OptionBuilder::greater_than(double v) {
  spec().min = v;
  spec().min_exclusive = true;
  return *this;
}
OptionBuilder& OptionBuilder::max(double v) {
  spec().max = v;
  return *this;
}
OptionBuilder& OptionBuilder::choices(std::vector<std::string> allowed) {
  spec().choices = std::move(allowed);
  return *this;
}
OptionBuilder& OptionBuilder::non_empty() {
  spec().allow_empty = false;
  return *this;
}

// -------------------------------------------------------------- ConfigSchema

ConfigSchema::ConfigSchema() : description_(std::make_unique<po::options_description>()) {}
ConfigSchema::~ConfigSchema() = default;
ConfigSchema::ConfigSchema(ConfigSchema&&) noexcept = default;
ConfigSchema& ConfigSchema::operator=(ConfigSchema&&) noexcept = default;

OptionBuilder ConfigSchema::add_spec(OptionSpec spec) {
  if (spec.key.find('.') == std::string::npos)
    throw Error("internal: configuration key '" + spec.key + "' has no section");
  if (find(spec.key)) throw Error("internal: configuration key '" + spec.key + "' registered twice");
  po::value_semantic* semantic = nullptr;
  switch (spec.kind) {
    case ValueKind::integer:
      semantic = po::value<std::int64_t>();
      break;
    case ValueKind::real:
      semantic = po::value<double>();
      break;
    case ValueKind::boolean:
      semantic = po::value<bool>()->implicit_value(true, "true");
      break;
    case ValueKind::string:
      semantic = po::value<std::string>();
      break;
  }
  description_->add_options()(spec.key.c_str(), semantic, spec.help.c_str());
  specs_.push_back(std::move(spec));
  return OptionBuilder(*this, specs_.size() - 1);
}

OptionBuilder ConfigSchema::add(const std::string& key, std::int64_t v, const std::string& help) {
  return add_spec({key, ValueKind::integer, help, std::to_string(v)});
}
OptionBuilder ConfigSchema::add(const std::string& key, double v, const std::string& help) {
  return add_spec({key, ValueKind::real, help, format_real(v)});
}
OptionBuilder ConfigSchema::add(const std::string& key, bool v, const std::string& help) {
  return add_spec({key, ValueKind::boolean, help, v ? "true" : "false"});
}
OptionBuilder ConfigSchema::add(const std::string& key, const std::string& v, const std::string& help) {
  return add_spec({key, ValueKind::string, help, v});
}
OptionBuilder ConfigSchema::add_without_default(const std::string& key, ValueKind kind, const std::string& help) {
  return add_spec({key, kind, help, std::nullopt});
}

const OptionSpec* ConfigSchema::find(const std::string& key) const {
  for (const auto& s : specs_)
    if (s.key == key) return &s;
  return nullptr;
}

std::vector<std::string> ConfigSchema::closest(const std::string& key, std::size_t n) const {
  std::vector<std::pair<std::size_t, std::string>> scored;
  for (const auto& s : specs_) {
    const auto d = edit_distance(key, s.key);
    // Same key name in another section is a likely mix-up too.
    const auto leaf = s.key.substr(s.key.find('.') + 1);
    const bool same_leaf = key.size() >= leaf.size() && key.compare(key.size() - leaf.size(), leaf.size(), leaf) == 0;
    if (d <= std::max<std::size_t>(2, key.size() / 3) || same_leaf) scored.emplace_back(same_leaf ? 0 : d, s.key);
  }
  std::sort(scored.begin(), scored.end());
  std::vector<std::string> out;
  for (std::size_t i = 0; i < scored.size() && i < n; ++i) out.push_back(scored[i].second);
  return out;
}

void ConfigSchema::mark_changes_output(const std::string& key, const std::string& what) {
  for (auto& spec : specs_)
    if (spec.key == key) return spec.changes_output_of.push_back(what);
  throw Error("internal: configuration key '" + key + "' marked as changing the output of " + what +
              " before it is registered");
}

const po::options_description& ConfigSchema::description() const { return *description_; }

std::string ConfigSchema::help(const std::vector<std::string>& sections) const {
  std::ostringstream out;
  std::string current;
  for (const auto& s : specs_) {
    const auto sec = section_of(s.key);
    if (!sections.empty() && std::find(sections.begin(), sections.end(), sec) == sections.end()) continue;
    if (sec != current) {
      out << "\n[" << sec << "]\n";
      current = sec;
    }
    out << "  --" << s.key;
    out << " (" << s.allowed()
        << (s.default_value ? "; default " + (s.default_value->empty() ? "\"\"" : *s.default_value) : "; required")
        << ")\n";
    out << "      " << s.help << "\n";
    for (const auto& what : s.changes_output_of) out << "      changes the output of " << what << "\n";
  }
  return out.str();
}

// -------------------------------------------------------------------- INI

std::vector<IniEntry> parse_ini(const std::string& text, const std::string& name) {
  std::vector<IniEntry> entries;
  std::map<std::string, std::string> first_line;  // key -> origin of its first setting
  std::istringstream in(text);
  std::string line, section;
  int lineno = 0;
  while (std::getline(in, line)) {
    // A UTF-8 byte-order mark (Windows editors write one) is not part of the first line.
    if (++lineno == 1 && line.rfind("\xEF\xBB\xBF", 0) == 0) line.erase(0, 3);
    const std::string origin = name + ":" + std::to_string(lineno);
    if (line.size() > kMaxConfigLine)
      throw ConfigError(origin + ": line of " + std::to_string(line.size()) + " characters, more than the " +
                        std::to_string(kMaxConfigLine) + " a configuration line may have");
    const std::string t = trim(line);
    if (t.empty() || t[0] == '#' || t[0] == ';') continue;
    if (t.front() == '[') {
      if (t.back() != ']' || t.size() < 3)
        throw ConfigError(origin + ": malformed section header '" + t + "' (expected [name])");
      section = trim(t.substr(1, t.size() - 2));
      continue;
    }
    const auto eq = t.find('=');
    if (eq == std::string::npos) throw ConfigError(origin + ": expected 'key = value', found '" + t + "'");
    std::string key = trim(t.substr(0, eq));
    if (key.empty()) throw ConfigError(origin + ": missing key before '='");
    if (key.find('.') == std::string::npos) {
      if (section.empty()) throw ConfigError(origin + ": key '" + key + "' is outside any [section]");
      key = section + "." + key;
    }
    // One file sets a key once: a second setting is almost always an edit
    // that forgot the first (later files and the command line still win).
    const auto [it, fresh] = first_line.emplace(key, origin);
    if (!fresh)
      throw ConfigError(origin + ": " + key + " is set a second time in this file (first at " + it->second +
                        "); remove one of the two lines");
    entries.push_back({key, trim(t.substr(eq + 1)), origin});
  }
  return entries;
}

std::vector<IniEntry> read_ini(const std::string& path) {
  // open(2) then fstat: a directory or a FIFO opens fine as a stream and
  // reads as empty, which would silently run with every default.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);  // a FIFO must not block
  if (fd < 0) throw ConfigError("cannot read configuration file '" + path + "': " + std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    throw ConfigError("cannot read configuration file '" + path + "': " + std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw ConfigError("cannot read configuration file '" + path +
                      "': " + (S_ISDIR(st.st_mode) ? "it is a directory" : "not a regular file"));
  }
  if (st.st_size > static_cast<off_t>(kMaxConfigFile)) {
    ::close(fd);
    throw ConfigError("configuration file '" + path + "' has " + std::to_string(st.st_size) + " bytes, more than the " +
                      std::to_string(kMaxConfigFile) + " a configuration file may have");
  }
  std::string text;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      throw ConfigError("cannot read configuration file '" + path + "': " + std::strerror(err));
    }
    if (n == 0) break;
    text.append(buf, static_cast<std::size_t>(n));
    if (text.size() > kMaxConfigFile) {
      ::close(fd);
      throw ConfigError("configuration file '" + path + "' is larger than the " + std::to_string(kMaxConfigFile) +
                        " bytes a configuration file may have");
    }
  }
  ::close(fd);
  return parse_ini(text, path);
}

// ------------------------------------------------------------------ Config

Config Config::resolve(const ConfigSchema& schema, const std::vector<std::string>& ini_files,
                       const std::vector<std::string>& overrides, const std::vector<std::string>& required_keys) {
  std::vector<IniEntry> entries;
  for (const auto& f : ini_files) {
    auto e = read_ini(f);
    entries.insert(entries.end(), e.begin(), e.end());
  }
  // Command line: let Boost tokenise "--a.b=v" / "--a.b v" / "--flag"; no
  // prefix guessing, so a typo is never silently taken for another key.
  std::vector<std::string> args;
  for (const auto& o : overrides) args.push_back(o.rfind("--", 0) == 0 ? o : "--" + o);
  if (!args.empty()) {
    po::parsed_options parsed(nullptr);
    try {
      parsed = po::command_line_parser(args)
                   .options(schema.description())
                   .style(po::command_line_style::default_style & ~po::command_line_style::allow_guessing)
                   .run();
    } catch (const po::unknown_option& e) {
      auto key = e.get_option_name();
      if (key.rfind("--", 0) == 0) key = key.substr(2);
      fail_unknown(schema, key.substr(0, key.find('=')), "command line");
    } catch (const po::error& e) {
      throw ConfigError(std::string("command line: ") + e.what());
    }
    for (const auto& opt : parsed.options) {
      // A bare boolean flag ("--train.amp") arrives without a value.
      const OptionSpec* spec = schema.find(opt.string_key);
      if (opt.value.empty() && spec && spec->kind == ValueKind::boolean) {
        entries.push_back({opt.string_key, "true", "command line"});
        continue;
      }
      if (opt.value.size() != 1)
        throw ConfigError("command line: --" + opt.string_key + " needs exactly one value (--" + opt.string_key +
                          "=VALUE)");
      entries.push_back({opt.string_key, opt.value[0], "command line"});
    }
  }

  Config cfg;
  for (const auto& s : schema.options()) {
    cfg.order_.push_back(s.key);
    if (s.default_value) {
      const auto v = parse_value(s, schema.description(), *s.default_value, "default");
      cfg.values_[s.key] = {canonical(s, v), v, "default"};
    }
  }
  for (const auto& e : entries) {
    const OptionSpec* spec = schema.find(e.key);
    if (!spec) fail_unknown(schema, e.key, e.origin);
    const auto v = parse_value(*spec, schema.description(), e.value, e.origin);
    cfg.values_[e.key] = {canonical(*spec, v), v, e.origin};
  }
  for (const auto& k : required_keys) {
    if (!schema.find(k)) throw Error("internal: required key '" + k + "' is not in the schema");
    if (!cfg.has(k))
      throw ConfigError("missing required configuration key '" + k + "' (" + schema.find(k)->help +
                        "); set it in a --config file or with --" + k + "=...");
  }
  return cfg;
}

bool Config::has(const std::string& key) const { return values_.count(key) > 0; }

const ConfigValue& Config::require(const std::string& key) const {
  auto it = values_.find(key);
  if (it == values_.end()) throw ConfigError("configuration key '" + key + "' has no value; set --" + key + "=...");
  return it->second;
}

const ConfigValue& Config::value(const std::string& key) const { return require(key); }

template <typename T>
static T cast_value(const ConfigValue& v, const std::string& key) {
  try {
    return boost::any_cast<T>(v.value);
  } catch (const boost::bad_any_cast&) {
    throw Error("internal: configuration key '" + key + "' read with the wrong type");
  }
}

std::int64_t Config::get_int(const std::string& key) const { return cast_value<std::int64_t>(require(key), key); }
double Config::get_real(const std::string& key) const { return cast_value<double>(require(key), key); }
bool Config::get_bool(const std::string& key) const { return cast_value<bool>(require(key), key); }
std::string Config::get_string(const std::string& key) const { return cast_value<std::string>(require(key), key); }

void Config::reject(const std::string& key, const std::string& why) const {
  const auto& v = require(key);
  throw ConfigError(v.origin + ": " + key + " = '" + v.text + "' " + why);
}

std::string Config::to_ini() const { return to_ini({}); }

std::string Config::to_ini(const std::vector<std::string>& sections) const {
  std::ostringstream out;
  std::string current;
  for (const auto& key : order_) {
    auto it = values_.find(key);
    if (it == values_.end()) continue;
    const auto sec = section_of(key);
    if (!sections.empty() && std::find(sections.begin(), sections.end(), sec) == sections.end()) continue;
    if (sec != current) {
      out << (current.empty() ? "" : "\n") << "[" << sec << "]\n";
      current = sec;
    }
    // A key below a subsection (retrieve.pool.format) is written whole: read_ini
    // takes a dotted key inside a section as absolute, so "pool.format" would
    // come back as a key of its own.
    const auto rest = key.substr(sec.size() + 1);
    out << (rest.find('.') == std::string::npos ? rest : key) << " = " << it->second.text << "\n";
  }
  return out.str();
}

}  // namespace dinv
