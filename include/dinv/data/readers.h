// Readers of the published dataset formats, each a Dataset, and the factory
// that builds one from configuration keys ([data] for real images, [syn] for
// synthetic ones). Every malformed input is an IoError (or StoreError for HDF5)
// that names the file, the record / byte offset / key, expected and found.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "dinv/data/dataset.h"

namespace dinv {
class Config;
class ConfigSchema;
}  // namespace dinv

namespace dinv::data {

// A dataset held in memory: images uint8 [N, H, W, 3], labels int64 [N].
// The readers of fixed-size formats decode everything once into one of these.
class TensorDataset : public Dataset {
 public:
  // Checks shapes, dtypes and that every label is in [0, class_names.size()).
  TensorDataset(at::Tensor images, at::Tensor labels, std::vector<std::string> class_names, std::string fingerprint,
                std::string description);
  std::int64_t size() const override;
  Example get(std::int64_t index) const override;
  const std::vector<std::string>& class_names() const override { return class_names_; }
  std::string fingerprint() const override { return fingerprint_; }
  std::string describe() const override { return description_; }
  const at::Tensor& images() const { return images_; }
  const at::Tensor& labels() const { return labels_; }

 private:
  at::Tensor images_, labels_;
  std::vector<std::string> class_names_;
  std::string fingerprint_, description_;
};

// CIFAR-10: `root` holds data_batch_1.bin ... data_batch_5.bin (train; as many
// as exist, consecutively from 1), test_batch.bin (test) and batches.meta.txt.
// Records are 1 label byte + 3072 bytes (R, G, B planes of 32x32, row-major).
DatasetPtr open_cifar10(const std::string& root, const std::string& split);
// CIFAR-100: train.bin / test.bin, records 1 coarse + 1 fine label byte + 3072;
// `labels` is "fine" (100 classes, fine_label_names.txt) or "coarse" (20,
// coarse_label_names.txt).
DatasetPtr open_cifar100(const std::string& root, const std::string& split, const std::string& labels = "fine");
// STL-10 binary: <split>_X.bin (uint8, per image 3x96x96 column-major, i.e.
// byte (c, x, y) at c*9216 + x*96 + y), <split>_y.bin (labels 1..10),
// class_names.txt.
DatasetPtr open_stl10(const std::string& root, const std::string& split);
// Image folder: `root/<split>/<class>/*.{png,jpg,jpeg}` when `root/<split>`
// exists, else `root/<class>/...`. Classes are the sorted folder names; files
// are decoded (libpng / libjpeg-turbo, as Pillow decodes them, converted to
// RGB) on each `get`, so that loader workers share the decoding.
DatasetPtr open_image_folder(const std::string& root, const std::string& split);
// MedMNIST .npz: arrays <split>_images uint8 [N, H, W] (grayscale: expanded to
// 3 channels) or [N, H, W, 3], <split>_labels [N] or [N, 1] integers.
DatasetPtr open_medmnist(const std::string& npz_path, const std::string& split);
// The synthetic images of a dinv store: /samples/<tag>/images [M, H, W, 3] u8
// and /samples/<tag>/label [M] for each tag (concatenated in the order given);
// class names from the /source attribute `class_names`.
// Every sample of the tags; a tag with unfinished chunks (its /samples/<tag>/done
// ledger) is a StoreError.
DatasetPtr open_store_samples(const std::string& store_path, const std::vector<std::string>& tags);
// Each tag exists and is finished (reads neither images nor labels): a
// StoreError naming the first that is not.
void require_finished_tags(const std::string& store_path, const std::vector<std::string>& tags);

// Which samples of a store a run trains on (syn.follow_real, syn.per_source,
// syn.total; docs/method.md "Sample-complexity sweeps").
struct SampleSelection {
  // Keep only samples whose /samples/<tag>/source lies in `real_indices`
  // (sorted dataset indices of the run's real subset); the store's /source
  // dataset_fingerprint must equal `real_fingerprint`.
  bool follow_real = false;
  std::vector<std::int64_t> real_indices;
  std::string real_fingerprint;
  std::int64_t per_source = 0;  // the first per_source samples of each source image (0: all)
  std::int64_t total = 0;       // then `total` of those, drawn with `seed` (0: all)
  std::uint64_t seed = 0;
};
// The samples chosen, with the record a results file keeps.
struct StoreSamples {
  DatasetPtr dataset;
  std::vector<std::string> tags;
  std::vector<std::vector<std::int64_t>> rows;  // per tag: ascending rows of /samples/<tag>
  std::int64_t count = 0;
  std::string fingerprint;  // the store's dataset fingerprint, each tag's identity and rows, hashed
};
StoreSamples select_store_samples(const std::string& store_path, const std::vector<std::string>& tags,
                                  const SampleSelection& selection);

// WebDataset shards: `root` is a .tar file or a folder of them (sorted by
// name); POSIX ustar members grouped by key into samples of one image
// (.png/.jpg/.jpeg) and an optional class index (.cls). The shards' headers are
// scanned once, front to back; images are read and decoded on `get`.
DatasetPtr open_webdataset(const std::string& root);
// Register the keys <section>.format, .root, .split, .labels, .tags that
// make_dataset(config, section) reads ("retrieve.pool" for the retrieval pool).
void register_dataset_options(ConfigSchema& schema, const std::string& section, const std::string& format,
                              const std::string& what);
// Register [data] (real images) and [syn] (synthetic images) keys.
void register_data_options(ConfigSchema& schema);
// The dataset that keys `<section>.format`, `<section>.root`, `<section>.split`,
// ... describe; `section` is "data" or "syn". Format "none" gives nullptr.
DatasetPtr make_dataset(const Config& config, const std::string& section = "data");
// Same from explicit values (tests, tools). `tags` for format "store".
// Format "captioned" is accepted by the configuration but is no Dataset (no
// class labels; open it with data/captioned.h): both overloads refuse it.
DatasetPtr make_dataset(const std::string& format, const std::string& root, const std::string& split,
                        const std::string& option = "", const std::vector<std::string>& tags = {});
// The stages that need class labels (embed, generate, train, sweep) call this
// first: ConfigError "data.format = captioned has no class labels;
// embed/generate/train need a labelled format (...)" when [data] or [syn] is
// captioned.
void require_labelled_data(const Config& config);

// Helpers shared by the readers.
std::vector<std::string> read_class_names(const std::string& path);
std::vector<std::uint8_t> read_file_bytes(const std::string& path);
std::string content_hash(const void* data, std::size_t size, std::string seed_hash = "");  // FNV-1a 64, hex

}  // namespace dinv::data
