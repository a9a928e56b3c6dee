// One folder per class; images decoded on access (loader workers decode).
#include <ATen/ATen.h>

#include <algorithm>
#include <filesystem>

#include "dinv/core/error.h"
#include "dinv/data/codec.h"
#include "dinv/data/readers.h"

namespace fs = std::filesystem;

namespace dinv::data {
namespace {

bool is_image_file(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg";
}

class ImageFolderDataset : public Dataset {
 public:
  explicit ImageFolderDataset(const fs::path& dir) : dir_(dir) {
    if (!fs::is_directory(dir)) throw IoError("image folder: '" + dir.string() + "' is not a folder (missing?)");
    for (const auto& entry : fs::directory_iterator(dir))
      if (entry.is_directory()) names_.push_back(entry.path().filename().string());
    std::sort(names_.begin(), names_.end());
    if (names_.empty()) throw IoError("image folder: '" + dir.string() + "' has no class sub-folders");
    std::string hash;
    for (std::size_t label = 0; label < names_.size(); ++label) add_class(label, hash);
    // Where the folder lives is not part of what it is: a moved or
    // symlinked copy is the same dataset (as CIFAR's fingerprint is), so a
    // store made from one still follows the other (syn.follow_real).
    fingerprint_ = "folder:n=" + std::to_string(files_.size()) + ":" + hash;
  }
  std::int64_t size() const override { return static_cast<std::int64_t>(files_.size()); }
  Example get(std::int64_t index) const override {
    if (index < 0 || index >= size()) throw Error(describe() + ": index " + std::to_string(index) + " out of range");
    return {decode_image_file(files_[index]), labels_[index]};
  }
  const std::vector<std::string>& class_names() const override { return names_; }
  std::string fingerprint() const override { return fingerprint_; }
  std::string describe() const override {
    return "image folder " + dir_.string() + " (" + std::to_string(files_.size()) + " images, " +
           std::to_string(names_.size()) + " classes)";
  }

 private:
  // Files of one class in sorted order; the fingerprint covers their names
  // below the folder (class/file) and sizes.
  void add_class(std::size_t label, std::string& hash) {
    std::vector<std::string> files;
    for (const auto& entry : fs::directory_iterator(dir_ / names_[label]))
      if (entry.is_regular_file() && is_image_file(entry.path())) files.push_back(entry.path().string());
    if (files.empty())
      throw IoError("image folder: class '" + names_[label] + "' (" + (dir_ / names_[label]).string() +
                    ") is empty: expected at least one .png/.jpg/.jpeg file");
    std::sort(files.begin(), files.end());
    for (const auto& f : files) {
      const std::string key =
          names_[label] + "/" + fs::path(f).filename().string() + ":" + std::to_string(fs::file_size(f));
      hash = content_hash(key.data(), key.size(), hash);
      files_.push_back(f);
      labels_.push_back(static_cast<std::int64_t>(label));
    }
  }
  fs::path dir_;
  std::vector<std::string> names_, files_;
  std::vector<std::int64_t> labels_;
  std::string fingerprint_;
};

DatasetPtr open_folder(const std::string& root, const std::string& split) {
  const fs::path with_split = fs::path(root) / split;
  if (!split.empty() && fs::is_directory(with_split)) return std::make_shared<ImageFolderDataset>(with_split);
  // A folder with split sub-folders but not this one must not silently serve
  // its other splits as classes (e.g. training images as the test set).
  for (const char* other : {"train", "val", "test"})
    if (fs::is_directory(fs::path(root) / other))
      throw IoError("image folder: '" + with_split.string() + "' is missing (found '" +
                    (fs::path(root) / other).string() + "': expected one folder per split)");
  return std::make_shared<ImageFolderDataset>(fs::path(root));
}

}  // namespace

// A link that loops or an entry that cannot be examined makes std::filesystem
// throw its own error: report it as the reader's, naming the path.
DatasetPtr open_image_folder(const std::string& root, const std::string& split) {
  try {
    return open_folder(root, split);
  } catch (const fs::filesystem_error& e) {
    throw IoError("image folder '" + root + "': " + e.what() + " (a symbolic link that loops or points nowhere?)");
  }
}

}  // namespace dinv::data
