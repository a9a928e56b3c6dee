#include "dinv/cli/arguments.h"

#include <boost/program_options.hpp>
#include <iostream>
#include <sstream>

#include "dinv/core/error.h"

namespace po = boost::program_options;

namespace dinv::cli {

Arguments::Arguments(std::string command, std::string usage)
    : command_(std::move(command)), usage_(std::move(usage)), options_(std::make_unique<po::options_description>(120)) {
  options_->add_options()("help,h", po::bool_switch(), "print this help");
}

Arguments::~Arguments() = default;
Arguments::Arguments(Arguments&&) noexcept = default;
Arguments& Arguments::operator=(Arguments&&) noexcept = default;

Arguments& Arguments::value(const std::string& name, const std::string& value_name, const std::string& help) {
  options_->add_options()(name.c_str(), po::value<std::string>()->value_name(value_name), help.c_str());
  return *this;
}

Arguments& Arguments::flag(const std::string& name, const std::string& help) {
  options_->add_options()(name.c_str(), po::bool_switch(), help.c_str());
  flag_names_.insert(name);
  return *this;
}

Arguments& Arguments::positional(const std::string& name, const std::string& help) {
  positional_name_ = name;
  positional_help_ = help;
  return *this;
}

Arguments& Arguments::pass_unknown() {
  pass_unknown_ = true;
  return *this;
}

Arguments& Arguments::epilog(const std::string& text) {
  epilog_ = text;
  return *this;
}

namespace {
// The key under which Program_options files positional arguments.
const char* const kPositional = "positional";
}  // namespace

void Arguments::parse(const std::vector<std::string>& args) {
  values_.clear();
  flags_.clear();
  positionals_.clear();
  unknown_.clear();
  po::options_description all(*options_);
  po::positional_options_description positional;
  if (!positional_name_.empty()) {
    all.add_options()(kPositional, po::value<std::vector<std::string>>());
    positional.add(kPositional, -1);
  }
  po::command_line_parser parser(args);
  parser.options(all).style(po::command_line_style::default_style & ~po::command_line_style::allow_guessing);
  // Without declared positionals, a bare word is an error, or (pass_unknown)
  // belongs to the unknown option before it ("--config FILE").
  if (!pass_unknown_) parser.positional(positional);
  if (pass_unknown_) parser.allow_unregistered();
  po::variables_map vm;
  try {
    const po::parsed_options parsed = parser.run();
    po::store(parsed, vm);
    if (pass_unknown_) unknown_ = po::collect_unrecognized(parsed.options, po::include_positional);
  } catch (const po::unknown_option& e) {
    reject("unknown option '" + e.get_option_name() + "'");
  } catch (const po::too_many_positional_options_error&) {
    reject("unexpected argument (this command takes only options)");
  } catch (const po::error& e) {
    reject(e.what());
  }
  help_asked_ = vm["help"].as<bool>();
  for (const auto& [name, v] : vm) {
    if (name == "help") continue;
    if (name == kPositional)
      positionals_ = v.as<std::vector<std::string>>();
    else if (flag_names_.count(name)) {
      if (v.as<bool>()) flags_.insert(name);
    } else
      values_[name] = v.as<std::string>();
  }
}

bool Arguments::parse_or_print_help(const std::vector<std::string>& args) {
  parse(args);
  if (help_asked_) std::cout << help();
  return !help_asked_;
}

std::string Arguments::help() const {
  std::ostringstream s;
  s << usage_ << "\n";
  if (!positional_name_.empty()) s << "\narguments:\n  " << positional_name_ << "  " << positional_help_ << "\n";
  s << "\noptions:\n" << *options_ << epilog_;
  return s.str();
}

const std::string& Arguments::get(const std::string& name) const {
  require(name);
  return values_.at(name);
}

std::string Arguments::get(const std::string& name, const std::string& fallback) const {
  return has(name) ? values_.at(name) : fallback;
}

std::int64_t Arguments::integer(const std::string& name, std::int64_t fallback) const {
  if (!has(name)) return fallback;
  const std::string& text = values_.at(name);
  try {
    std::size_t used = 0;
    const long long v = std::stoll(text, &used);
    if (used == text.size()) return v;
  } catch (const std::exception&) {
  }
  throw ConfigError(command_ + ": --" + name + "=" + text + " is not an integer");
}

std::int64_t Arguments::integer(const std::string& name, std::int64_t fallback, std::int64_t min) const {
  const std::int64_t v = integer(name, fallback);
  if (v < min)
    throw ConfigError(command_ + ": --" + name + "=" + values_.at(name) +
                      " is not an integer >= " + std::to_string(min));
  return v;
}

double Arguments::real(const std::string& name, double fallback) const {
  if (!has(name)) return fallback;
  const std::string& text = values_.at(name);
  try {
    std::size_t used = 0;
    const double v = std::stod(text, &used);
    if (used == text.size()) return v;
  } catch (const std::exception&) {
  }
  throw ConfigError(command_ + ": --" + name + "=" + text + " is not a number");
}

void Arguments::require(const std::string& name) const {
  if (!has(name)) reject("--" + name + " is required");
}

const std::string& Arguments::one_positional(const std::string& what) const {
  if (positionals_.size() != 1)
    reject("expected one " + what + ", got " + std::to_string(positionals_.size()) + " positional arguments");
  return positionals_.front();
}

void Arguments::reject(const std::string& message) const {
  throw ConfigError(command_ + ": " + message + "\n\n" + help());
}

}  // namespace dinv::cli
