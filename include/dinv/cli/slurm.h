// Slurm job options from the configuration ([slurm] and per-stage
// [slurm.STAGE] sections), for slurm/submit.sh (through `dinv slurm STAGE`)
// and the job-array script of `dinv sweep --sweep.mode=slurm`.
//
//   [slurm]            partition, account, qos, time, nodes, ntasks,
//                      ntasks_per_node, cpus_per_task, gpus_per_node, mem,
//                      constraint, array_parallelism, extra
//   [slurm.embed]      the same keys for one stage (also slurm.generate,
//   [slurm.sweep] ...  slurm.train, slurm.sweep): a stage's key wins over the
//                      [slurm] key; the value "none" unsets the [slurm] key
//                      for that stage.
//
// Every key is unset by default and an unset key is not passed to sbatch, so
// the cluster's defaults apply. None of these keys changes what a stage
// computes: they are left out of the configuration that stores and results
// files record (recorded_ini).
#pragma once

#include <string>
#include <vector>

namespace dinv {
class Config;
class ConfigSchema;
}  // namespace dinv

namespace dinv::cli {

// The stages that have their own [slurm.STAGE] section.
const std::vector<std::string>& slurm_stages();

void register_slurm_options(ConfigSchema& schema);

// The value of slurm.STAGE.KEY, else slurm.KEY; "" when unset or "none".
std::string slurm_value(const Config& config, const std::string& stage, const std::string& key);

// sbatch options of `stage`, one argument each ("--partition=gpu",
// "--cpus-per-task=4", then the slurm.extra items verbatim). The array
// throttle (array_parallelism) is not among them: see sweep_array_spec.
std::vector<std::string> sbatch_options(const Config& config, const std::string& stage);

// The --array value for these task ids: "0-9", "1,4,7", with "%N" from
// slurm.sweep.array_parallelism / slurm.array_parallelism.
std::string sweep_array_spec(const Config& config, const std::vector<std::size_t>& tasks);

// The resolved configuration as stores and results files record it: every
// section except [slurm] (where a job runs does not change what it computes).
std::string recorded_ini(const Config& config);

}  // namespace dinv::cli
