// The dataset formats in one table: everything the <section>.format option,
// the factory, the help and the normalisation choice need, so that a new format
// is one row of dataset_formats() (src/data/factory.cpp) and its reader.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "dinv/data/dataset.h"

namespace dinv::data {

// Where a format's files are and which part of them to read.
struct DatasetSource {
  std::string root, split;
  std::string labels;             // CIFAR-100: fine or coarse
  std::vector<std::string> tags;  // store: /samples/<tag> names
};

struct DatasetFormat {
  std::string name;
  std::string help;  // what <section>.format = name reads (option help)
  // Class-labelled, so embed/generate/train can use it (captioned: no).
  bool labelled = true;
  // The data.normalize table that "auto" picks for it.
  std::string normalize = "shapes";
  // Opens the dataset; null for "none" and for "captioned" (no Dataset).
  std::function<DatasetPtr(const DatasetSource&)> open;
};

// Every format, in the order the option's help lists them.
const std::vector<DatasetFormat>& dataset_formats();
// The row of `name`; ConfigError naming the known formats when there is none.
const DatasetFormat& dataset_format(const std::string& name);

}  // namespace dinv::data
