// The in-memory dataset and the file helpers every reader uses.
#include <ATen/ATen.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "dinv/core/error.h"
#include "dinv/data/readers.h"

namespace dinv::data {

TensorDataset::TensorDataset(at::Tensor images, at::Tensor labels, std::vector<std::string> class_names,
                             std::string fingerprint, std::string description)
    : images_(std::move(images)),
      labels_(std::move(labels)),
      class_names_(std::move(class_names)),
      fingerprint_(std::move(fingerprint)),
      description_(std::move(description)) {
  if (images_.dim() != 4 || images_.size(3) != 3 || images_.scalar_type() != at::kByte)
    throw IoError(description_ + ": images must be uint8 [N, H, W, 3], found " + std::string(images_.toString()) + " " +
                  c10::str(images_.sizes()));
  labels_ = labels_.to(at::kLong).contiguous();
  if (labels_.dim() != 1 || labels_.size(0) != images_.size(0))
    throw IoError(description_ + ": expected " + std::to_string(images_.size(0)) + " labels, found shape " +
                  c10::str(labels_.sizes()));
  images_ = images_.contiguous();
  const auto* y = labels_.data_ptr<std::int64_t>();
  const auto classes = static_cast<std::int64_t>(class_names_.size());
  for (std::int64_t i = 0; i < labels_.size(0); ++i)
    if (y[i] < 0 || y[i] >= classes)
      throw IoError(description_ + ": label of example " + std::to_string(i) + " is " + std::to_string(y[i]) +
                    ", expected 0.." + std::to_string(classes - 1) + " (" + std::to_string(classes) + " classes)");
}

std::int64_t TensorDataset::size() const { return images_.size(0); }

Example TensorDataset::get(std::int64_t index) const {
  if (index < 0 || index >= size())
    throw Error(description_ + ": index " + std::to_string(index) + " out of range [0, " + std::to_string(size()) +
                ")");
  return {images_[index], labels_.data_ptr<std::int64_t>()[index]};
}

std::vector<std::uint8_t> read_file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw IoError("cannot open '" + path + "' for reading (missing file?)");
  // A directory opens as a stream and reports a size of -1.
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) throw IoError("'" + path + "' is not a regular file");
  const auto end = in.tellg();
  if (end < 0) throw IoError("cannot determine the size of '" + path + "'");
  const auto size = static_cast<std::size_t>(end);
  std::vector<std::uint8_t> bytes;
  try {
    bytes.resize(size);
  } catch (const std::bad_alloc&) {
    throw IoError("'" + path + "': cannot hold its " + std::to_string(size) + " bytes in memory");
  }
  in.seekg(0);
  if (size > 0 && !in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(size)))
    throw IoError("cannot read " + std::to_string(size) + " bytes from '" + path + "'");
  return bytes;
}

// One class name per line; blank lines (CIFAR-10 ends with one) are ignored.
std::vector<std::string> read_class_names(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw IoError("cannot open class names file '" + path + "' (missing file?)");
  std::vector<std::string> names;
  std::string line;
  while (std::getline(in, line)) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    if (!line.empty()) names.push_back(line);
  }
  if (names.empty()) throw IoError("class names file '" + path + "' is empty: expected one class name per line");
  return names;
}

std::string content_hash(const void* data, std::size_t size, std::string seed_hash) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (char c : seed_hash) h = (h ^ static_cast<std::uint8_t>(c)) * 0x100000001b3ull;
  const auto* p = static_cast<const std::uint8_t*>(data);
  for (std::size_t i = 0; i < size; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(h));
  return text;
}

}  // namespace dinv::data
