// The `dinv` subcommands. Each command is a name, a one-line summary, the
// configuration sections it reads, its required keys and a run function; main
// does the common part (MPI world, configuration, errors, exit codes).
#pragma once

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "dinv/core/config.h"

namespace dinv::dist {
class World;
}

namespace dinv::cli {

struct CommandContext {
  dist::World& world;
  Config config;                        // resolved (for config-driven commands)
  std::vector<std::string> positional;  // arguments that are not options
};

struct Command {
  std::string name;
  std::string summary;
  std::string usage;                       // "dinv embed --config FILE [--section.key=value ...]"
  std::vector<std::string> sections;       // configuration sections shown by --help
  std::vector<std::string> required_keys;  // checked when the configuration is resolved
  std::function<int(CommandContext&)> run;
  // Commands with their own argument grammar (e.g. `model`) get the raw
  // arguments instead of a resolved configuration.
  std::function<int(dist::World&, const std::vector<std::string>&)> run_raw;
  // Short flags of the command: "--flag VALUE" / "--flag=VALUE" stand for
  // "--section.key=VALUE" (e.g. `generate --preview 16`); a flag mapped to
  // "section.key=value" is a switch without a value (`sweep --status`).
  std::vector<std::pair<std::string, std::string>> flags;
};

// Every command, in the order `dinv --help` lists them.
const std::vector<Command>& commands();
// The full configuration schema: every module registers its keys here.
const ConfigSchema& schema();
// Version report of dinv and the libraries it runs on.
std::string version_report();

// Common keys (section [run]): seed, device, threads, log level, progress.
void register_run_options(ConfigSchema& schema);
// Apply [run] settings to this process (log level, threads, device).
void apply_run_options(const Config& config, dist::World& world);

// Split "--config FILE" (repeatable), "--section.key=value" overrides and
// positional arguments; the command's `flags` become overrides of their keys.
struct ParsedArgs {
  std::vector<std::string> config_files, overrides, positional;
};
ParsedArgs split_args(const std::vector<std::string>& args,
                      const std::vector<std::pair<std::string, std::string>>& flags = {});

}  // namespace dinv::cli
