// Configuration of Stage 3: [train] keys (model, optimiser, schedule,
// evaluation, checkpoints, results) and [sweep] keys (grids of runs).
#pragma once

#include <string>
#include <vector>

#include "dinv/classify/trainer.h"

namespace dinv {
class Config;
class ConfigSchema;
}  // namespace dinv

namespace dinv::classify {

void register_train_options(ConfigSchema& schema);
void register_sweep_options(ConfigSchema& schema);

// TrainOptions from [train] and [data] keys; `resolution` and `num_classes`
// come from the data.
TrainOptions train_options(const Config& config, std::int64_t resolution, std::int64_t num_classes);
// "resnet18_cifar10_n1000_real_s0" unless train.run_name is set; runs with
// store samples add their tags and amount: "..._n1000_mixed_method_k2_s0".
std::string run_name(const Config& config);
// "_method+prompt_k2_t500" of a run with store samples ("" otherwise).
std::string synthetic_label(const Config& config);

// One point of a sweep: its name and the overrides that define it.
struct SweepPoint {
  std::string name;
  std::vector<std::string> overrides;  // "--section.key=value"
  std::string source;                  // real, synthetic or mixed
};
// The grid of sweep.model x sweep.num_data x sweep.source x sweep.syn_tags x
// sweep.syn_amount x sweep.seed (empty lists: the base configuration's value),
// in that nesting order; real-only points skip the two synthetic axes.
std::vector<SweepPoint> expand_sweep(const Config& config);

}  // namespace dinv::classify
