// The options of a subcommand with its own grammar (`dinv model info|run|init|sample`,
// `dinv data shapes|export|info`), declared once and parsed by Boost.Program_options,
// so that `--help` lists every option with its help text and a mistake is reported
// with the subcommand's name. Values are kept as the text given and converted on
// request, so that a bad value is reported as "--steps=x is not an integer".
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

namespace boost::program_options {
class options_description;
}

namespace dinv::cli {

class Arguments {
 public:
  // `command` prefixes every message ("dinv model sample"); `usage` is the
  // synopsis line(s) that `help()` prints above the options.
  Arguments(std::string command, std::string usage);
  ~Arguments();
  Arguments(Arguments&&) noexcept;
  Arguments& operator=(Arguments&&) noexcept;

  // "--name VALUE" or "--name=VALUE"; `value_name` is shown in the help.
  Arguments& value(const std::string& name, const std::string& value_name, const std::string& help);
  // "--name", a switch without a value.
  Arguments& flag(const std::string& name, const std::string& help);
  // Positional arguments, in order, named by `name` in the help ("DIR").
  Arguments& positional(const std::string& name, const std::string& help);
  // Options that are not declared ("--section.key=value", "--config FILE") are
  // kept, in order, for the configuration instead of being rejected.
  Arguments& pass_unknown();
  // Text that help() prints after the options (e.g. the configuration keys).
  Arguments& epilog(const std::string& text);

  // Throws ConfigError naming the option and the command. "--help" / "-h" sets help_asked().
  void parse(const std::vector<std::string>& args);
  // parse(), then, when --help was asked for, print help() to stdout and return false.
  bool parse_or_print_help(const std::vector<std::string>& args);

  bool help_asked() const { return help_asked_; }
  std::string help() const;

  bool has(const std::string& name) const { return values_.count(name) > 0; }
  bool is_set(const std::string& flag) const { return flags_.count(flag) > 0; }
  const std::string& get(const std::string& name) const;  // the value of a required option
  std::string get(const std::string& name, const std::string& fallback) const;
  std::int64_t integer(const std::string& name, std::int64_t fallback) const;
  std::int64_t integer(const std::string& name, std::int64_t fallback, std::int64_t min) const;
  double real(const std::string& name, double fallback) const;
  const std::vector<std::string>& positionals() const { return positionals_; }
  const std::vector<std::string>& unknown() const { return unknown_; }  // with pass_unknown()

  // Throws ConfigError "<command>: --name is required" unless the option was given.
  void require(const std::string& name) const;
  // Throws ConfigError unless exactly one positional argument was given ("expected one `what`").
  const std::string& one_positional(const std::string& what) const;
  // Throws ConfigError "<command>: <message>" followed by the help.
  [[noreturn]] void reject(const std::string& message) const;

 private:
  std::string command_, usage_, epilog_;
  std::unique_ptr<boost::program_options::options_description> options_;
  std::string positional_name_, positional_help_;
  std::set<std::string> flag_names_;
  bool pass_unknown_ = false;

  bool help_asked_ = false;
  std::map<std::string, std::string> values_;
  std::set<std::string> flags_;
  std::vector<std::string> positionals_, unknown_;
};

}  // namespace dinv::cli
