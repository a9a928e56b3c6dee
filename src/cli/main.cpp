// dinv: Diffusion Inversion at cluster scale. One binary, launched by srun or
// mpirun; `dinv --help` lists the commands.
#include <algorithm>
#include <iostream>
#include <string>
#include <vector>

#include "dinv/cli/command.h"
#include "dinv/core/error.h"
#include "dinv/core/log.h"
#include "dinv/core/memory.h"
#include "dinv/core/signals.h"
#include "dinv/dist/world.h"
#include "dinv/store/h5.h"

namespace {

using dinv::cli::Command;

void print_usage() {
  std::cout << "dinv: Diffusion Inversion at cluster scale\n\n"
               "usage: dinv <command> [--config FILE ...] [--section.key=value ...]\n"
               "       dinv <command> --help | dinv --help | dinv --version\n\ncommands:\n";
  for (const auto& c : dinv::cli::commands()) {
    std::string name = c.name;
    name.resize(10, ' ');
    std::cout << "  " << name << c.summary << "\n";
  }
  std::cout << "\nConfiguration: INI files (--config, several allowed, later wins), then --section.key=value\n"
               "overrides. Exit codes: 0 ok, 1 run-time failure, 2 bad command line or configuration.\n";
}

void print_command_help(const Command& c) {
  std::cout << "dinv " << c.name << ": " << c.summary << "\n\nusage: " << c.usage << "\n";
  if (!c.sections.empty()) std::cout << "\nconfiguration keys:" << dinv::cli::schema().help(c.sections);
}

const Command* find_command(const std::string& name) {
  for (const auto& c : dinv::cli::commands())
    if (c.name == name) return &c;
  return nullptr;
}

// Errors are reported by the rank that has them; with several ranks the whole
// job is aborted so that no rank waits forever in a collective.
int fail(const std::string& command, const dinv::Error& e, int size) {
  const int code = static_cast<int>(e.exit_code());
  std::cerr << "dinv " << command << ": error" << (size > 1 ? " on rank " + std::to_string(dinv::log::rank()) : "")
            << ": " << e.what() << std::endl;
  // A file whose writes failed must not be closed (see h5::write_failed).
  if (size > 1 || dinv::h5::write_failed()) dinv::dist::World::abort(code);
  return code;
}

int run(const Command& cmd, const std::vector<std::string>& args, int* argc, char*** argv) {
  dinv::dist::World world(argc, argv);
  dinv::signals::install_stop_handlers();  // again: see main()
  try {
    if (cmd.run_raw) return cmd.run_raw(world, args);
    auto parsed = dinv::cli::split_args(args, cmd.flags);
    dinv::cli::CommandContext ctx{
        world, dinv::Config::resolve(dinv::cli::schema(), parsed.config_files, parsed.overrides, cmd.required_keys),
        parsed.positional};
    dinv::cli::apply_run_options(ctx.config, world);
    dinv::log::info("dinv " + cmd.name + " on " + world.describe());
    dinv::log::info("resolved configuration:\n" + ctx.config.to_ini());
    return cmd.run(ctx);
  } catch (const dinv::ConfigError& e) {
    // Every rank reads the same configuration and fails the same way: one
    // message from rank 0, exit code 2 everywhere, no abort needed.
    if (world.is_root()) std::cerr << "dinv " << cmd.name << ": " << e.what() << std::endl;
    return static_cast<int>(e.exit_code());
  } catch (const dinv::Error& e) {
    return fail(cmd.name, e, world.size());
  } catch (const std::exception& e) {
    return fail(cmd.name, dinv::Error(std::string("unexpected: ") + e.what()), world.size());
  }
}

}  // namespace

int main(int argc, char** argv) {
  // First thing: a time-limit signal (SIGUSR2) that arrives while MPI starts
  // must request a checkpoint, not kill the rank (the default action). They
  // are installed again once MPI is up, in case its start-up replaced them.
  dinv::signals::install_stop_handlers();
  dinv::core::configure_malloc();
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    print_usage();
    return args.empty() ? 2 : 0;
  }
  if (args[0] == "--version") {
    std::cout << dinv::cli::version_report();
    return 0;
  }
  const Command* cmd = find_command(args[0]);
  if (!cmd) {
    std::cerr << "dinv: unknown command '" << args[0] << "' (dinv --help lists the commands)" << std::endl;
    return 2;
  }
  std::vector<std::string> rest(args.begin() + 1, args.end());
  if (std::find(rest.begin(), rest.end(), "--help") != rest.end() && !cmd->run_raw) {
    print_command_help(*cmd);
    return 0;
  }
  return run(*cmd, rest, &argc, &argv);
}
