// A trained classifier on disk (train.save_model), loadable by dinv again:
//   FOLDER/model.safetensors  every parameter and buffer by its module name
//   FOLDER/config.json        what rebuilds and feeds it: the model, classes,
//                             resolution, input normalisation, the run
// `dinv evaluate` measures generated images with it.
#pragma once

#include <array>
#include <string>
#include <vector>

#include "dinv/classify/models.h"

namespace dinv::classify {

inline constexpr const char* kSavedClassifierFormat = "dinv-classifier/1";

struct SavedClassifierInfo {
  ModelSpec spec;
  std::vector<std::string> class_names;
  std::array<float, 3> mean{}, std{};  // the input normalisation it was trained with
  std::string run;                     // train.run_name
  std::string test_fingerprint;        // the test set it was evaluated on
  double final_accuracy = 0;
};

// Writes FOLDER (created; files replaced atomically). Call on one rank.
void save_classifier(const std::string& folder, ClassifierImpl& model, const SavedClassifierInfo& info);

struct LoadedClassifier {
  ClassifierPtr model;  // in eval mode, on the CPU
  SavedClassifierInfo info;
  std::string fingerprint;  // sha256 of config.json and model.safetensors
};

// IoError naming the file (and the key or tensor) for a missing or malformed
// config.json, another format, a tensor missing, extra or of another shape.
LoadedClassifier load_classifier(const std::string& folder);

}  // namespace dinv::classify
