// `dinv evaluate`: how generated images compare with real ones, measured in
// the representation of a classifier trained by dinv (train.save_model).
// Per synthetic tag, into the store's /metrics/<tag> (docs/architecture.md):
//   fid, precision, recall, density, coverage   generated vs the real images
//   label_agreement (+ per class)                the classifier's accuracy on
//                                                the generated images' labels
//   leak check        test images with a generated image closer than
//                     evaluate.leak_ratio x the median test-to-test distance
//   memorisation      each generated image's nearest source image, and how
//                     often that is its own source
// Features are computed over ranks in fixed chunks and summed, so every rank
// holds all of them and 1, 2 or 4 ranks give the same numbers.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "dinv/core/settings.h"

namespace dinv {
class Config;
class ConfigSchema;
namespace dist {
class World;
class Communicator;
}  // namespace dist
}  // namespace dinv

namespace dinv::evaluate {

struct EvaluateSettings {
  std::string classifier;         // a folder written by train.save_model
  std::string tag_list;           // evaluate.tags as given: comma-separated
  std::vector<std::string> tags;  // /samples/<tag> to measure
  std::int64_t k = 3;             // neighbours of precision/recall/density/coverage
  std::int64_t batch_size = 100;  // images per forward pass (and per work unit)
  std::int64_t max_images = 0;    // per set, the first ones (0: all)
  double leak_ratio = 0.1;
  std::string classifier_fingerprint;  // derived: the loaded classifier's
};

// The evaluate settings, declared once (core/settings.h): registration,
// reading, the settings text and attributes of /metrics/<tag> come from it.
const settings::Declaration<EvaluateSettings>& evaluate_declaration();
void register_evaluate_options(ConfigSchema& schema);
EvaluateSettings evaluate_settings(const Config& config);

struct TagMetrics {
  std::string tag;
  double fid = 0, precision = 0, recall = 0, density = 0, coverage = 0, label_agreement = 0;
  std::vector<double> per_class_agreement;
  std::int64_t leaked_test_images = 0;
  double own_source_share = 0, mean_source_distance = 0;
  bool skipped = false;  // measured before with the same classifier and settings
};

// Collective; `config` supplies data.* (the real and test images) and store.path.
std::vector<TagMetrics> run_evaluate(dist::World& world, dist::Communicator& comm, const EvaluateSettings& settings,
                                     const Config& config);

}  // namespace dinv::evaluate
