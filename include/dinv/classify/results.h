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

// Which images a run trained on (results: /selection and attributes selection.*).
struct SelectionRecord {
  bool has_real = false;                 // a real dataset was opened (real images, or synthetic following them)
  std::vector<std::int64_t> real_index;  // dataset indices of the real subset
  std::string real_fingerprint;
  std::vector<std::string> synthetic_tags;                // store tags (empty: no store samples)
  std::vector<std::vector<std::int64_t>> synthetic_rows;  // per tag, rows of /samples/<tag>
  std::int64_t synthetic_count = 0;
  std::string synthetic_fingerprint;
  bool follow_real = false;
  std::int64_t per_source = 0, total = 0;
};

struct RunInfo {
  std::string run_name;
  std::string config_ini;
  std::map<std::string, std::string> fingerprints;  // "train", "synthetic", "test" -> fingerprint
  std::vector<std::string> class_names;
  int world_size = 1;
  std::string device = "cpu";
  std::int64_t global_batch = 0;
  SelectionRecord selection;
};

void write_results(const std::string& path, const TrainResult& result, const RunInfo& info);
// True when `path` exists and is a complete results file of this schema.
bool results_complete(const std::string& path);

}  // namespace dinv::classify
