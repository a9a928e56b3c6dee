// [slurm] options and `dinv slurm STAGE` (the sbatch options of a stage, for
// slurm/submit.sh).
#include "dinv/cli/slurm.h"

#include <algorithm>
#include <iostream>
#include <sstream>

#include "dinv/cli/command.h"
#include "dinv/core/config.h"
#include "dinv/core/error.h"
#include "dinv/core/util.h"
#include "dinv/dist/world.h"

namespace dinv::cli {
namespace {

struct SlurmKey {
  const char* key;
  const char* option;  // sbatch option; "" for keys handled elsewhere
  bool integer;
  const char* help;
};

const std::vector<SlurmKey>& slurm_keys() {
  static const std::vector<SlurmKey> keys = {
      {"partition", "--partition", false, "partition (sbatch --partition)"},
      {"account", "--account", false, "account charged (sbatch --account)"},
      {"qos", "--qos", false, "quality of service (sbatch --qos)"},
      {"time", "--time", false, "time limit, e.g. 04:00:00 or 1-00:00:00 (sbatch --time)"},
      {"nodes", "--nodes", false, "nodes, N or MIN-MAX (sbatch --nodes)"},
      {"ntasks", "--ntasks", true, "MPI ranks of the job (sbatch --ntasks)"},
      {"ntasks_per_node", "--ntasks-per-node", true, "MPI ranks per node (sbatch --ntasks-per-node)"},
      {"cpus_per_task", "--cpus-per-task", true,
       "CPUs per rank (sbatch --cpus-per-task); run.threads = 0 then uses this many threads"},
      {"gpus_per_node", "--gpus-per-node", false, "GPUs per node, N or TYPE:N (sbatch --gpus-per-node)"},
      {"mem", "--mem", false, "memory per node, e.g. 64G (sbatch --mem)"},
      {"constraint", "--constraint", false, "node features required (sbatch --constraint)"},
      {"array_parallelism", "", true, "sweep arrays: at most this many tasks at once (the %N of --array)"},
      {"extra", "", false,
       "more sbatch options, separated by ';', each passed as is (one #SBATCH line each), e.g. "
       "\"--exclusive; --mail-type=END\""},
  };
  return keys;
}

// Where slurm_value found its value (for error messages).
std::string key_of(const Config& c, const std::string& stage, const std::string& key) {
  const std::string own = "slurm." + stage + "." + key;
  return c.has(own) ? own : "slurm." + key;
}

std::vector<std::string> extra_items(const Config& c, const std::string& stage) {
  std::vector<std::string> out;
  std::stringstream in(slurm_value(c, stage, "extra"));
  std::string item;
  while (std::getline(in, item, ';')) {
    item = trim(item);
    if (item.empty()) continue;
    if (item.rfind("#SBATCH", 0) == 0) item = trim(item.substr(7));
    if (item.empty() || item[0] != '-')
      c.reject(key_of(c, stage, "extra"), "has '" + item + "', which is not an sbatch option (--name=value)");
    out.push_back(item);
  }
  return out;
}

}  // namespace

const std::vector<std::string>& slurm_stages() {
  static const std::vector<std::string> stages = {"pretrain", "embed", "retrieve", "generate",
                                                  "train",    "sweep", "evaluate"};
  return stages;
}

void register_slurm_options(ConfigSchema& s) {
  // No defaults: an unset key is not passed to sbatch (the cluster decides),
  // and configurations without [slurm] record exactly what they did before.
  for (const auto& k : slurm_keys())
    s.add_without_default(std::string("slurm.") + k.key, ValueKind::string,
                          std::string(k.help) + "; unset: the cluster's default");
  for (const auto& stage : slurm_stages())
    for (const auto& k : slurm_keys())
      s.add_without_default("slurm." + stage + "." + k.key, ValueKind::string,
                            "slurm." + std::string(k.key) + " for " + stage + " jobs only (\"none\": unset it there)");
}

std::string slurm_value(const Config& c, const std::string& stage, const std::string& key) {
  const std::string own = "slurm." + stage + "." + key, shared = "slurm." + key;
  std::string v = c.has(own) ? c.get_string(own) : c.has(shared) ? c.get_string(shared) : "";
  v = trim(v);
  if (v == "none") return "";
  return v;
}

std::vector<std::string> sbatch_options(const Config& c, const std::string& stage) {
  if (std::find(slurm_stages().begin(), slurm_stages().end(), stage) == slurm_stages().end())
    throw ConfigError("unknown stage '" + stage + "' (" + join(slurm_stages()) + ")");
  std::vector<std::string> out;
  for (const auto& k : slurm_keys()) {
    const std::string v = slurm_value(c, stage, k.key);
    if (v.empty()) continue;
    if (k.integer && (v.find_first_not_of("0123456789") != std::string::npos || v[0] == '0'))
      c.reject(key_of(c, stage, k.key), "is not a positive integer (or \"none\")");
    if (v.find_first_of("\n\r") != std::string::npos) c.reject(key_of(c, stage, k.key), "spans several lines");
    if (*k.option) out.push_back(std::string(k.option) + "=" + v);
  }
  for (auto& item : extra_items(c, stage)) out.push_back(std::move(item));
  return out;
}

std::string sweep_array_spec(const Config& c, const std::vector<std::size_t>& tasks) {
  std::string spec;
  // Runs of consecutive ids as "a-b": 0-9 for a whole sweep, "1,4-5" for a resubmission.
  for (std::size_t i = 0; i < tasks.size();) {
    std::size_t j = i;
    while (j + 1 < tasks.size() && tasks[j + 1] == tasks[j] + 1) ++j;
    if (!spec.empty()) spec += ",";
    spec += std::to_string(tasks[i]);
    if (j > i) spec += "-" + std::to_string(tasks[j]);
    i = j + 1;
  }
  sbatch_options(c, "sweep");  // validates array_parallelism with the other keys
  const std::string throttle = slurm_value(c, "sweep", "array_parallelism");
  if (!throttle.empty()) spec += "%" + throttle;
  return spec;
}

std::string recorded_ini(const Config& c) {
  std::vector<std::string> sections;
  for (const auto& spec : schema().options()) {
    const std::string sec = spec.key.substr(0, spec.key.find('.'));
    if (sec != "slurm" && std::find(sections.begin(), sections.end(), sec) == sections.end()) sections.push_back(sec);
  }
  return c.to_ini(sections);
}

int run_slurm(CommandContext& ctx) {
  if (ctx.positional.size() != 1)
    throw ConfigError("dinv slurm: expected one stage (" + join(slurm_stages()) + "), got " +
                      std::to_string(ctx.positional.size()) + " arguments");
  const auto options = sbatch_options(ctx.config, ctx.positional[0]);
  if (ctx.world.is_root())
    for (const auto& o : options) std::cout << o << "\n";
  std::cout.flush();
  return 0;
}

}  // namespace dinv::cli
