// Datasets from configuration: [data] describes the real images, [syn] the
// synthetic ones (format "none" when a run uses real images only).
#include <sstream>

#include "dinv/core/config.h"
#include "dinv/core/error.h"
#include "dinv/core/util.h"
#include "dinv/data/formats.h"
#include "dinv/data/readers.h"

namespace dinv::data {
namespace {

std::vector<std::string> format_names(bool labelled_only) {
  std::vector<std::string> names;
  for (const auto& f : dataset_formats())
    if (f.open && (f.labelled || !labelled_only)) names.push_back(f.name);
  return names;
}

// Captioned folders (data/captioned.h) are images with captions and no class
// labels: the pretraining data, not a Dataset.
std::string captioned_refusal(const std::string& key) {
  return key + " = captioned has no class labels; embed/generate/train need a labelled format (" +
         join(format_names(true)) +
         "): a captioned folder is text-to-image pretraining data (dinv pretrain; dinv data info describes it)";
}

std::string format_help() {
  std::string help;
  for (const auto& f : dataset_formats())
    help += (help.empty() ? "" : ", ") + f.name + (f.help.empty() ? "" : " (" + f.help + ")");
  return help;
}

}  // namespace

const std::vector<DatasetFormat>& dataset_formats() {
  static const std::vector<DatasetFormat> formats{
      {"none", "no dataset", true, "shapes", nullptr},
      {"cifar10", "CIFAR-10 binary batches", true, "cifar10",
       [](const DatasetSource& s) { return open_cifar10(s.root, s.split); }},
      {"cifar100", "CIFAR-100 binary, .labels fine or coarse", true, "cifar100",
       [](const DatasetSource& s) { return open_cifar100(s.root, s.split, s.labels.empty() ? "fine" : s.labels); }},
      {"stl10", "STL-10 binary", true, "stl10", [](const DatasetSource& s) { return open_stl10(s.root, s.split); }},
      {"folder", "one folder of images per class", true, "imagenet",
       [](const DatasetSource& s) { return open_image_folder(s.root, s.split); }},
      {"medmnist", "a MedMNIST .npz file", true, "medmnist",
       [](const DatasetSource& s) { return open_medmnist(s.root, s.split); }},
      {"store", "/samples/<tag> of a dinv store, .tags", true, "shapes",
       [](const DatasetSource& s) { return open_store_samples(s.root, s.tags); }},
      {"captioned", "metadata.jsonl + images: pretraining data, no labels", false, "shapes", nullptr},
      {"webdataset", ".tar shards: root is one or a folder of them", true, "shapes",
       [](const DatasetSource& s) { return open_webdataset(s.root); }},
  };
  return formats;
}

const DatasetFormat& dataset_format(const std::string& name) {
  for (const auto& f : dataset_formats())
    if (f.name == name) return f;
  std::vector<std::string> known;
  for (const auto& f : dataset_formats())
    if (f.name != "none") known.push_back(f.name);
  throw ConfigError("unknown dataset format '" + name + "', expected one of: " + join(known));
}

void register_dataset_options(ConfigSchema& s, const std::string& section, const std::string& format,
                              const std::string& what) {
  std::vector<std::string> names;
  for (const auto& f : dataset_formats()) names.push_back(f.name);
  s.add(section + ".format", format, "format of the " + what + ": " + format_help()).choices(names);
  s.add(section + ".root", "", "folder of the " + what + " (medmnist: the .npz file; store: the store file)");
  s.add(section + ".split", "train", "split to read: train, test (medmnist also val)")
      .choices({"train", "test", "val"});
  s.add(section + ".labels", "fine", "CIFAR-100 label set: fine (100 classes) or coarse (20)")
      .choices({"fine", "coarse"});
  s.add(section + ".tags", "", "store format: comma-separated /samples/<tag> names, concatenated in this order");
}

void register_data_options(ConfigSchema& s) {
  register_dataset_options(s, "data", "cifar10", "real images");
  s.add("data.num_data", 0, "real images used: 0 = all, else a multiple of data.group_size").min(0);
  s.add("data.group_size", 100, "subset groups: consecutive dataset indices g*group_size ..").min(1);
  s.add("data.subset_seed", 0, "seed choosing the subset's groups").min(0);
  s.add("data.resolution", 0, "training resolution: bicubic resize + center crop (0: the images' own size)")
      .min(0)
      .max(kMaxResolution);
  s.add("data.augment", "crop_flip",
        "training augmentation: none, crop_flip (random crop, padding res/8, flip), "
        "autoaugment (crop_flip + AutoAugment CIFAR10 policy)")
      .choices({"none", "crop_flip", "autoaugment"});
  s.add("data.normalize", "auto",
        "mean/std table: auto (from data.format), cifar10, cifar100, stl10, imagenette, "
        "imagenet, medmnist, shapes")
      .choices({"auto", "cifar10", "cifar100", "stl10", "imagenette", "imagenet", "medmnist", "shapes"});
  s.add("data.real_bs", 128, "real images per training step, all ranks together (0: synthetic only)").min(0);
  s.add("data.syn_bs", 0, "synthetic images per training step, all ranks together").min(0);
  s.add("data.eval_bs", 256,
        "test images per evaluation batch, all ranks together (each rank takes its share, rounded up)")
      .min(1);
  s.add("data.mix", "none", "batch mixing: none, mixup, cutmix").choices({"none", "mixup", "cutmix"});
  s.add("data.mix_alpha", 1.0, "Beta(alpha, alpha) of MixUp / CutMix").greater_than(0);
  s.add("data.workers", 2, "loader threads per rank (0: in the training thread)").min(0).max(64);
  s.add("data.prefetch", 4, "batches prepared ahead per loader").min(1).max(256);
  register_dataset_options(s, "syn", "none", "synthetic images");
  s.add("syn.follow_real", true,
        "store format: train on the samples whose source image lies in the run's real "
        "subset (data.num_data; by /samples/<tag>/source), also when data.real_bs = 0; the store must come from "
        "the real dataset. false: every sample of syn.tags");
  s.add("syn.per_source", 0, "store format: the first N samples of each source image (0: all)").min(0);
  s.add("syn.total", 0, "store format: N samples of those selected, drawn with data.subset_seed (0: all)").min(0);
}

DatasetPtr make_dataset(const std::string& format, const std::string& root, const std::string& split,
                        const std::string& option, const std::vector<std::string>& tags) {
  const DatasetFormat& f = dataset_format(format);
  if (f.name == "none") return nullptr;
  if (!f.labelled) throw ConfigError(captioned_refusal("format"));
  if (root.empty())
    throw ConfigError("dataset format '" + format + "' needs a root path (key <section>.root), found none");
  return f.open({root, split, option, tags});
}

void require_labelled_data(const Config& config) {
  for (const char* section : {"data", "syn"}) {
    const std::string key = std::string(section) + ".format";
    if (config.get_string(key) == "captioned") throw ConfigError(captioned_refusal(key));
  }
}

DatasetPtr make_dataset(const Config& config, const std::string& section) {
  const auto format = config.get_string(section + ".format");
  if (format == "captioned") throw ConfigError(captioned_refusal(section + ".format"));
  if (format == "store" && split_list(config.get_string(section + ".tags")).empty())
    config.reject(section + ".tags", "format 'store' needs at least one sample tag");
  if (format != "none" && config.get_string(section + ".root").empty())
    config.reject(section + ".root", "format '" + format + "' needs the path of its files");
  return make_dataset(format, config.get_string(section + ".root"), config.get_string(section + ".split"),
                      config.get_string(section + ".labels"), split_list(config.get_string(section + ".tags")));
}

}  // namespace dinv::data
