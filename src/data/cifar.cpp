// CIFAR-10 / CIFAR-100 binary batches and STL-10 binary files.
#include <ATen/ATen.h>

#include <filesystem>

#include "dinv/core/error.h"
#include "dinv/data/readers.h"

namespace fs = std::filesystem;

namespace dinv::data {
namespace {

constexpr std::int64_t kCifarSide = 32, kCifarPixels = 3 * 32 * 32;

struct Decoded {
  at::Tensor images, labels;
  std::string hash;
};

void require_split(const std::string& format, const std::string& split, const std::vector<std::string>& allowed) {
  for (const auto& a : allowed)
    if (a == split) return;
  std::string list;
  for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
  throw IoError(format + ": unknown split '" + split + "', expected one of: " + list);
}

// Append the records of one CIFAR batch file: `label_bytes` label bytes (the
// one at `label_byte` is the label used), then the R, G and B planes.
void read_cifar_file(const std::string& path, int label_bytes, int label_byte, std::size_t classes,
                     std::vector<at::Tensor>& images, std::vector<at::Tensor>& labels, std::string& hash) {
  const auto bytes = read_file_bytes(path);
  const std::int64_t record = label_bytes + kCifarPixels;
  const auto size = static_cast<std::int64_t>(bytes.size());
  if (size == 0 || size % record != 0)
    throw IoError("'" + path + "': size " + std::to_string(size) + " bytes is not a positive multiple of the " +
                  std::to_string(record) + "-byte record (truncated file? expected " +
                  std::to_string((size / record + 1) * record) + " bytes for " + std::to_string(size / record + 1) +
                  " records; the last record starts at byte " + std::to_string(size / record * record) + ")");
  const std::int64_t n = size / record;
  for (std::int64_t r = 0; r < n; ++r)
    if (bytes[r * record + label_byte] >= classes)
      throw IoError("'" + path + "' record " + std::to_string(r) + " (byte " + std::to_string(r * record + label_byte) +
                    "): label " + std::to_string(bytes[r * record + label_byte]) + ", expected 0.." +
                    std::to_string(classes - 1) + " (" + std::to_string(classes) + " class names)");
  auto raw = at::from_blob(const_cast<std::uint8_t*>(bytes.data()), {n, record}, at::kByte);
  labels.push_back(raw.select(1, label_byte).to(at::kLong));
  images.push_back(raw.narrow(1, label_bytes, kCifarPixels)
                       .reshape({n, 3, kCifarSide, kCifarSide})
                       .permute({0, 2, 3, 1})
                       .contiguous());
  hash = content_hash(bytes.data(), bytes.size(), hash);
}

DatasetPtr finish(const std::string& format, const std::string& root, const std::string& split,
                  std::vector<at::Tensor>& images, std::vector<at::Tensor>& labels, std::vector<std::string> names,
                  const std::string& hash) {
  auto x = at::cat(images), y = at::cat(labels);
  const auto n = x.size(0);
  const std::string desc = format + " " + split + " (" + std::to_string(n) + " images, " + std::to_string(x.size(1)) +
                           "x" + std::to_string(x.size(2)) + ", " + root + ")";
  const std::string fp = format + ":" + split + ":n=" + std::to_string(n) + ":" + hash;
  return std::make_shared<TensorDataset>(x, y, std::move(names), fp, desc);
}

}  // namespace

DatasetPtr open_cifar10(const std::string& root, const std::string& split) {
  require_split("CIFAR-10", split, {"train", "test"});
  const fs::path dir(root);
  std::vector<std::string> files;
  if (split == "test") {
    files.push_back((dir / "test_batch.bin").string());
  } else {
    for (int k = 1; fs::exists(dir / ("data_batch_" + std::to_string(k) + ".bin")); ++k)
      files.push_back((dir / ("data_batch_" + std::to_string(k) + ".bin")).string());
    if (files.empty())
      throw IoError("CIFAR-10: missing file '" + (dir / "data_batch_1.bin").string() +
                    "' (expected data_batch_1.bin ... in " + root + ")");
  }
  auto names = read_class_names((dir / "batches.meta.txt").string());
  std::vector<at::Tensor> images, labels;
  std::string hash;
  for (const auto& f : files) read_cifar_file(f, 1, 0, names.size(), images, labels, hash);
  return finish("CIFAR-10", root, split, images, labels, std::move(names), hash);
}

DatasetPtr open_cifar100(const std::string& root, const std::string& split, const std::string& labels_kind) {
  require_split("CIFAR-100", split, {"train", "test"});
  if (labels_kind != "fine" && labels_kind != "coarse")
    throw IoError("CIFAR-100: label kind '" + labels_kind + "', expected 'fine' or 'coarse'");
  const fs::path dir(root);
  auto names = read_class_names((dir / (labels_kind + "_label_names.txt")).string());
  std::vector<at::Tensor> images, labels;
  std::string hash;
  // Records hold the coarse label first, then the fine one.
  read_cifar_file((dir / (split + ".bin")).string(), 2, labels_kind == "coarse" ? 0 : 1, names.size(), images, labels,
                  hash);
  return finish("CIFAR-100 (" + labels_kind + ")", root, split, images, labels, std::move(names), hash);
}

DatasetPtr open_stl10(const std::string& root, const std::string& split) {
  require_split("STL-10", split, {"train", "test"});
  constexpr std::int64_t side = 96, per_image = 3 * side * side;
  const fs::path dir(root);
  const std::string x_path = (dir / (split + "_X.bin")).string(), y_path = (dir / (split + "_y.bin")).string();
  auto names = read_class_names((dir / "class_names.txt").string());
  const auto xb = read_file_bytes(x_path);
  const auto yb = read_file_bytes(y_path);
  const auto n = static_cast<std::int64_t>(yb.size());
  if (static_cast<std::int64_t>(xb.size()) != n * per_image)
    throw IoError("STL-10: '" + x_path + "' has " + std::to_string(xb.size()) + " bytes, expected " +
                  std::to_string(n * per_image) + " (" + std::to_string(n) + " images of 3x96x96, one per label in '" +
                  y_path + "')");
  for (std::int64_t i = 0; i < n; ++i)
    if (yb[i] < 1 || yb[i] > static_cast<std::int64_t>(names.size()))
      throw IoError("STL-10: '" + y_path + "' byte " + std::to_string(i) + ": label " + std::to_string(yb[i]) +
                    ", expected 1.." + std::to_string(names.size()) + " (labels are 1-based)");
  // Column-major per image: [c][x][y] in the file, so [N, 3, W, H] -> [N, H, W, 3].
  auto x = at::from_blob(const_cast<std::uint8_t*>(xb.data()), {n, 3, side, side}, at::kByte)
               .permute({0, 3, 2, 1})
               .contiguous();
  auto y = at::from_blob(const_cast<std::uint8_t*>(yb.data()), {n}, at::kByte).to(at::kLong) - 1;
  std::vector<at::Tensor> images{x}, labels{y};
  const std::string hash = content_hash(yb.data(), yb.size(), content_hash(xb.data(), xb.size()));
  return finish("STL-10", root, split, images, labels, std::move(names), hash);
}

}  // namespace dinv::data
