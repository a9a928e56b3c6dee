// The synthetic images of a dinv store (/samples/<tag>), read serially.
#include <ATen/ATen.h>

#include "dinv/core/error.h"
#include "dinv/data/readers.h"
#include "dinv/store/h5.h"

namespace dinv::data {

DatasetPtr open_store_samples(const std::string& store_path, const std::vector<std::string>& tags) {
  if (tags.empty()) throw IoError("store '" + store_path + "': no sample tags given (data key 'tags')");
  h5::quiet_errors();
  auto file = h5::open_file_serial(store_path);
  if (!h5::exists(file, "source"))
    throw StoreError("store '" + store_path + "': no /source group (class names live in its attribute 'class_names')");
  auto names = h5::strings_attribute(h5::open_group(file, "source"), "class_names", store_path + ":/source");
  std::vector<at::Tensor> images, labels;
  std::string hash, tag_list;
  for (const auto& tag : tags) {
    const std::string group = "samples/" + tag;
    if (!h5::exists(file, "samples") || !h5::exists(file, group))
      throw StoreError("store '" + store_path + "' has no /" + group + " (tag '" + tag + "' was never generated)");
    // Shapes and dtypes first: the extents come from the file.
    const auto xd = h5::open_dataset(file, group + "/images");
    h5::require_layout(xd, "/" + group + "/images", at::kByte, {-1, -1, -1, 3});
    const auto yd = h5::open_dataset(file, group + "/label");
    const auto ydims = h5::dataset_dims(yd);
    if (ydims.size() != 1 || ydims[0] != h5::dataset_dims(xd)[0])
      throw StoreError("store '" + store_path + "' /" + group + "/label is " + c10::str(c10::IntArrayRef(ydims)) +
                       ", expected one label per image [" + std::to_string(h5::dataset_dims(xd)[0]) + "]");
    auto x = h5::read_all(xd, store_path + ":/" + group + "/images");
    auto y = h5::read_all(yd, store_path + ":/" + group + "/label");
    if (x.scalar_type() != at::kByte || x.dim() != 4 || x.size(3) != 3 || y.dim() != 1 || y.size(0) != x.size(0))
      throw StoreError("store '" + store_path + "' /" + group + ": expected images [M, H, W, 3] u8 and label [M], found " +
                       c10::str(x.sizes()) + " " + std::string(c10::toString(x.scalar_type())) + " and " + c10::str(y.sizes()));
    if (!images.empty() && x.sizes().slice(1) != images[0].sizes().slice(1))
      throw StoreError("store '" + store_path + "' /" + group + ": images " + c10::str(x.sizes()) +
                       " differ in size from the first tag's " + c10::str(images[0].sizes()));
    hash = content_hash(x.data_ptr(), x.numel(), hash);
    images.push_back(x);
    labels.push_back(y.to(at::kLong));
    tag_list += (tag_list.empty() ? "" : ",") + tag;
  }
  auto x = at::cat(images);
  const std::string desc = "store samples " + tag_list + " (" + std::to_string(x.size(0)) + " images, " +
                           std::to_string(x.size(1)) + "x" + std::to_string(x.size(2)) + ", " + store_path + ")";
  return std::make_shared<TensorDataset>(x, at::cat(labels), names,
                                         "store:" + tag_list + ":n=" + std::to_string(x.size(0)) + ":" + hash, desc);
}

}  // namespace dinv::data
