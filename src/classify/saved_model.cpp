#include "dinv/classify/saved_model.h"

#include <cstdio>
#include <filesystem>
#include <map>
#include <set>

#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include "dinv/core/error.h"
#include "dinv/data/readers.h"
#include "dinv/io/files.h"
#include "dinv/io/hash.h"
#include "dinv/io/json.h"
#include "dinv/io/safetensors.h"

namespace dinv::classify {
namespace {

std::map<std::string, at::Tensor> state_of(ClassifierImpl& model) {
  std::map<std::string, at::Tensor> state;
  for (const auto& p : model.named_parameters()) state[p.key()] = p.value().detach().cpu().contiguous();
  for (const auto& b : model.named_buffers()) state[b.key()] = b.value().detach().cpu().contiguous();
  return state;
}

io::Json config_json(const SavedClassifierInfo& info) {
  return {{"format", kSavedClassifierFormat},
          {"model", info.spec.name},
          {"num_classes", info.spec.num_classes},
          {"resolution", info.spec.resolution},
          {"class_names", info.class_names},
          {"normalize", {{"mean", info.mean}, {"std", info.std}}},
          {"run", info.run},
          {"test_fingerprint", info.test_fingerprint},
          {"final_accuracy", info.final_accuracy}};
}

std::array<float, 3> three(const io::JsonObject& o, const std::string& key) {
  const auto& v = o.at(key);
  if (!v.is_array() || v.size() != 3 || !v[0].is_number() || !v[1].is_number() || !v[2].is_number())
    throw IoError(o.where() + ": '" + key + "' must be a list of 3 numbers");
  return {v[0].get<float>(), v[1].get<float>(), v[2].get<float>()};
}

SavedClassifierInfo read_info(const std::string& path) {
  const io::Json json = io::read_json_file(path);  // JsonObject only points at it
  const io::JsonObject o(json, path);
  const auto format = o.get_string("format");
  if (format != kSavedClassifierFormat)
    throw IoError(path + ": format '" + format + "', expected '" + kSavedClassifierFormat +
                  "' (a folder written by "
                  "dinv train with train.save_model)");
  SavedClassifierInfo info;
  info.spec.name = o.get_string("model");
  info.spec.num_classes = o.get_int("num_classes");
  info.spec.resolution = o.get_int("resolution");
  info.class_names = o.get_string_list("class_names");
  if (static_cast<std::int64_t>(info.class_names.size()) != info.spec.num_classes)
    throw IoError(path + ": " + std::to_string(info.class_names.size()) + " class_names for num_classes " +
                  std::to_string(info.spec.num_classes));
  const auto norm = o.object("normalize");
  info.mean = three(norm, "mean");
  info.std = three(norm, "std");
  info.run = o.get_string("run", "");
  info.test_fingerprint = o.get_string("test_fingerprint", "");
  info.final_accuracy = o.get_double("final_accuracy", 0.0);
  return info;
}

}  // namespace

void save_classifier(const std::string& folder, ClassifierImpl& model, const SavedClassifierInfo& info) {
  std::filesystem::create_directories(folder);
  const std::string weights = folder + "/model.safetensors", config = folder + "/config.json";
  io::write_safetensors(weights + ".tmp", state_of(model), {{"format", kSavedClassifierFormat}});
  io::write_json_file(config + ".tmp", config_json(info));
  io::replace_file(weights + ".tmp", weights);
  io::replace_file(config + ".tmp", config);
}

LoadedClassifier load_classifier(const std::string& folder) {
  const std::string config = folder + "/config.json", weights = folder + "/model.safetensors";
  if (!std::filesystem::is_regular_file(config))
    throw IoError("no classifier in " + folder + ": " + config +
                  " is missing (dinv train writes one with "
                  "train.save_model = true)");
  LoadedClassifier out;
  out.info = read_info(config);
  out.model = make_model(out.info.spec);
  const io::SafetensorsFile file(weights);
  std::set<std::string> expected;
  torch::NoGradGuard no_grad;
  for (auto& [name, tensor] : state_of(*out.model)) expected.insert(name);
  for (auto& p : out.model->named_parameters()) file.read_into(p.key(), p.value());
  for (auto& b : out.model->named_buffers()) file.read_into(b.key(), b.value());
  for (const auto& t : file.tensors())
    if (!expected.count(t.name))
      throw IoError(weights + ": tensor '" + t.name + "' is not part of " + out.info.spec.name + " (" + config +
                    " names another model?)");
  out.model->eval();
  io::Sha256 sha;
  sha.update(io::canonical_json(io::read_json_file(config)));
  const auto bytes = data::read_file_bytes(weights);
  sha.update(bytes.data(), bytes.size());
  out.fingerprint = out.info.spec.name + ":" + sha.hex_digest().substr(0, 16);
  return out;
}

}  // namespace dinv::classify
