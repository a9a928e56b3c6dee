// Configuration (docs/architecture.md, "Configuration"): one schema of typed keys
// "section.key", INI files (several, later wins) and `--section.key=value`
// command-line overrides on top. Unknown keys, bad types, out-of-range values,
// missing required keys and unreadable files are ConfigErrors (exit code 2) that
// name the key, the value, where it came from (file:line or command line) and
// what is allowed.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/any.hpp>

namespace boost::program_options {
class options_description;
}

namespace dinv {

enum class ValueKind { integer, real, boolean, string };

// What one key accepts. Built with the fluent calls of ConfigSchema::add.
struct OptionSpec {
  std::string key;  // "section.key"
  ValueKind kind = ValueKind::string;
  std::string help;
  std::optional<std::string> default_value;  // canonical text; none = no default
  std::optional<double> min, max;            // inclusive bounds for numbers
  bool min_exclusive = false;
  std::vector<std::string> choices;  // allowed strings, if non-empty
  bool allow_empty = true;           // strings: "" allowed?
  // Stages whose output the key decides ("generate when generate.mode =
  // prompt"): a store made with another value is not continued (settings.h).
  std::vector<std::string> changes_output_of;

  std::string allowed() const;  // human description of what is allowed
};

class ConfigSchema;

// Fluent handle returned by ConfigSchema::add to refine one option.
class OptionBuilder {
 public:
  OptionBuilder(ConfigSchema& schema, std::size_t index) : schema_(schema), index_(index) {}
  OptionBuilder& min(double v);
  OptionBuilder& greater_than(double v);
  OptionBuilder& max(double v);
  OptionBuilder& choices(std::vector<std::string> allowed);
  OptionBuilder& non_empty();

 private:
  OptionSpec& spec();
  ConfigSchema& schema_;
  std::size_t index_;
};

class ConfigSchema {
 public:
  ConfigSchema();
  ~ConfigSchema();
  ConfigSchema(ConfigSchema&&) noexcept;
  ConfigSchema& operator=(ConfigSchema&&) noexcept;

  // A key with a default value (its type is taken from the default).
  OptionBuilder add(const std::string& key, std::int64_t default_value, const std::string& help);
  OptionBuilder add(const std::string& key, int default_value, const std::string& help) {
    return add(key, static_cast<std::int64_t>(default_value), help);
  }
  OptionBuilder add(const std::string& key, double default_value, const std::string& help);
  OptionBuilder add(const std::string& key, bool default_value, const std::string& help);
  OptionBuilder add(const std::string& key, const std::string& default_value, const std::string& help);
  OptionBuilder add(const std::string& key, const char* default_value, const std::string& help) {
    return add(key, std::string(default_value), help);
  }
  // A key without a default: a command that needs it lists it as required.
  OptionBuilder add_without_default(const std::string& key, ValueKind kind, const std::string& help);

  // Note in the help that `key` (registered already) decides `what` ("embed").
  void mark_changes_output(const std::string& key, const std::string& what);

  const OptionSpec* find(const std::string& key) const;
  const std::vector<OptionSpec>& options() const { return specs_; }
  // Keys whose names are closest to `key` (for "did you mean").
  std::vector<std::string> closest(const std::string& key, std::size_t n = 3) const;
  // The Boost description, for help text and typed parsing.
  const boost::program_options::options_description& description() const;
  // Help for the sections given (all sections when empty).
  std::string help(const std::vector<std::string>& sections = {}) const;

 private:
  friend class OptionBuilder;
  OptionBuilder add_spec(OptionSpec spec);
  std::vector<OptionSpec> specs_;
  std::unique_ptr<boost::program_options::options_description> description_;
};

// One resolved value and where it came from.
struct ConfigValue {
  std::string text;    // canonical text
  boost::any value;    // std::int64_t, double, bool or std::string
  std::string origin;  // "default", "file.ini:12", "command line"
};

class Config {
 public:
  // Resolve `ini_files` in order, then `overrides` ("--section.key=value" or
  // "section.key=value"), against `schema`; require `required_keys` to have a value.
  static Config resolve(const ConfigSchema& schema, const std::vector<std::string>& ini_files,
                        const std::vector<std::string>& overrides, const std::vector<std::string>& required_keys = {});

  bool has(const std::string& key) const;
  std::int64_t get_int(const std::string& key) const;
  double get_real(const std::string& key) const;
  bool get_bool(const std::string& key) const;
  std::string get_string(const std::string& key) const;
  const ConfigValue& value(const std::string& key) const;

  // Fail (ConfigError naming the key, its value and origin) with `why`.
  [[noreturn]] void reject(const std::string& key, const std::string& why) const;

  // The resolved configuration as INI text, in schema order; parsing it back
  // gives the same configuration. This is what stores and result files keep.
  std::string to_ini() const;
  // Only the given sections (e.g. what identifies an embedding run).
  std::string to_ini(const std::vector<std::string>& sections) const;

 private:
  const ConfigValue& require(const std::string& key) const;
  std::vector<std::string> order_;
  std::map<std::string, ConfigValue> values_;
};

// Caps on configuration input (ConfigErrors name the file and line, or the
// command line, when exceeded): a configuration file, one line of it, one
// string value, and the text of one number or boolean.
constexpr std::size_t kMaxConfigFile = 16u << 20;   // 16 MiB
constexpr std::size_t kMaxConfigLine = 1u << 20;    // 1 MiB
constexpr std::size_t kMaxConfigValue = 64u << 10;  // 64 KiB
constexpr std::size_t kMaxNumberText = 64;
// The largest image side any resolution key accepts (generate.sampling_resolution,
// generate.save_resolution, embed.resolution, data.resolution): SD samples at
// 512 or 1024; larger values only ask for memory no machine has.
constexpr std::int64_t kMaxResolution = 4096;

// Parse one INI file into (key, value, origin) triples: "[section]" headers,
// "key = value", '#' or ';' comments. Errors name the file and line. A key set
// twice in one file is an error naming both lines. `read_ini` refuses what is
// not a regular, readable file (a directory, a FIFO).
struct IniEntry {
  std::string key, value, origin;
};
std::vector<IniEntry> read_ini(const std::string& path);
std::vector<IniEntry> parse_ini(const std::string& text, const std::string& name);

}  // namespace dinv
