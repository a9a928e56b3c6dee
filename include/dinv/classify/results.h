// One HDF5 file per training run (results/<run>.h5), written by rank 0 into a
// temporary file and renamed, so that a file under its final name is always
// complete (sweeps skip runs whose file exists and says complete = 1).
//
//   /                 attrs: schema, run, config (resolved INI), complete,
//                     final_accuracy, final_loss, best_accuracy, best_step,
//                     steps, world_size, device, train_seconds, eval_seconds,
//                     images_per_second, class_names, fingerprint.<name>
//   /history/step, /history/lr, /history/train_loss      [steps]
//   /eval/step, /eval/accuracy, /eval/loss               [evaluations]
//   /eval/per_class_accuracy                             [evaluations, classes]
//   /final/per_class_accuracy                            [classes]
#pragma once

#include <map>
#include <string>
#include <vector>

#include "dinv/classify/trainer.h"

namespace dinv::classify {

inline constexpr const char* kResultsSchema = "dinv-train-results/1";

struct RunInfo {
  std::string run_name;
  std::string config_ini;
  std::map<std::string, std::string> fingerprints;  // "train", "synthetic", "test" -> fingerprint
  std::vector<std::string> class_names;
  int world_size = 1;
  std::string device = "cpu";
  std::int64_t global_batch = 0;
};

void write_results(const std::string& path, const TrainResult& result, const RunInfo& info);
// True when `path` exists and is a complete results file of this schema.
bool results_complete(const std::string& path);

}  // namespace dinv::classify
