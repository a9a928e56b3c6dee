#include <sched.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <thread>

#include <ATen/Parallel.h>

#include "dinv/cli/command.h"
#include "dinv/core/error.h"
#include "dinv/core/log.h"
#include "dinv/core/progress.h"
#include "dinv/core/seed.h"
#include "dinv/dist/world.h"

namespace dinv::cli {
namespace {

int positive_env(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) return 0;
  char* end = nullptr;
  const long n = std::strtol(v, &end, 10);
  return *end == '\0' && n > 0 && n <= 1024 ? static_cast<int>(n) : 0;
}

// The intra-op threads of a rank when run.threads = 0, and why: an explicit
// OMP_NUM_THREADS or SLURM_CPUS_PER_TASK first; else the CPUs the launcher
// lets this rank run on (mpirun binds 1 or 2 ranks to one core each: more
// threads than that would time-share it), at most the node's cores divided
// by its ranks (ranks bound to a whole socket share it).
std::pair<int, std::string> auto_threads(const dist::World& world) {
  for (const char* name : {"OMP_NUM_THREADS", "SLURM_CPUS_PER_TASK"})
    if (const int n = positive_env(name)) return {n, std::string("from ") + name};
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const int share = std::max(1, cores / std::max(1, world.local_size()));
  cpu_set_t mask;
  const int allowed = sched_getaffinity(0, sizeof mask, &mask) == 0 ? std::max(1, CPU_COUNT(&mask)) : cores;
  return {std::min(allowed, share), std::to_string(allowed) + " CPUs this rank may run on, " + std::to_string(cores) +
                                        " cores / " + std::to_string(world.local_size()) + " ranks on the node"};
}

}  // namespace

void register_run_options(ConfigSchema& s) {
  register_run_seed(s);
  s.add("run.device", "auto", "device of each rank: auto (one GPU per local rank, else cpu), cpu, cuda, cuda:N")
      .non_empty();
  s.add("run.threads", 0,
        "intra-op CPU threads per rank (0: OMP_NUM_THREADS, else SLURM_CPUS_PER_TASK, else the CPUs the "
        "rank is bound to, at most cores / ranks on the node); CPU results depend on it, so fix it (e.g. 1) to "
        "get the same bytes from different rank counts")
      .min(0)
      .max(1024);
  s.add("run.log_level", "info", "log level").choices({"debug", "info", "warn", "error", "off"});
  s.add("run.progress", "auto", "progress display: auto (bar on a terminal, lines in a file), bar, lines, off")
      .choices({"auto", "bar", "lines", "off"});
  s.add("run.progress_interval", 30.0, "seconds between progress lines in line mode").greater_than(0);
}

void apply_run_options(const Config& config, dist::World& world) {
  log::set_level(log::level_from_string(config.get_string("run.log_level")));
  world.select_device(config.get_string("run.device"));
  auto threads = config.get_int("run.threads");
  if (threads == 0) {
    const auto [n, why] = auto_threads(world);
    threads = n;
    // CPU kernels split their sums by thread count: a rank count that changes
    // the threads changes the last bits of every result.
    log::debug("run.threads = 0: " + std::to_string(threads) + " intra-op threads per rank (" + why +
               "); set run.threads to get the same bytes from any rank count");
  }
  at::set_num_threads(static_cast<int>(threads));
  const auto progress = config.get_string("run.progress");
  Progress::set_default(progress == "bar"     ? Progress::Style::bar
                        : progress == "lines" ? Progress::Style::lines
                        : progress == "off"   ? Progress::Style::silent
                                              : Progress::Style::automatic,
                        config.get_real("run.progress_interval"));
}

ParsedArgs split_args(const std::vector<std::string>& args,
                      const std::vector<std::pair<std::string, std::string>>& flags) {
  ParsedArgs out;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    const auto flag = std::find_if(flags.begin(), flags.end(),
                                   [&](const auto& f) { return a == f.first || a.rfind(f.first + "=", 0) == 0; });
    if (flag != flags.end() && flag->second.find('=') != std::string::npos) {
      // A switch ("--status" for "sweep.status=true") takes no value.
      if (a != flag->first) throw ConfigError(flag->first + " takes no value");
      out.overrides.push_back("--" + flag->second);
    } else if (flag != flags.end()) {
      if (a == flag->first && i + 1 >= args.size())
        throw ConfigError(flag->first + " needs a value (it stands for --" + flag->second + "=VALUE)");
      const std::string value = a == flag->first ? args[++i] : a.substr(flag->first.size() + 1);
      out.overrides.push_back("--" + flag->second + "=" + value);
    } else if (a == "--config" || a == "-c") {
      if (i + 1 >= args.size()) throw ConfigError("--config needs a file name");
      out.config_files.push_back(args[++i]);
    } else if (a.rfind("--config=", 0) == 0) {
      out.config_files.push_back(a.substr(9));
    } else if (a.rfind("--", 0) == 0) {
      out.overrides.push_back(a);  // "--section.key=value" or a boolean "--section.flag"
    } else {
      out.positional.push_back(a);
    }
  }
  return out;
}

}  // namespace dinv::cli
