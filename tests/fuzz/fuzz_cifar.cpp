// CIFAR-10 / CIFAR-100 batches and STL-10 binaries: the first byte picks the
// format, the rest is the data file (class-name files are fixed and valid).
#include <algorithm>
#include <cstdint>
#include <string>

#include "dinv/core/error.h"
#include "dinv/data/readers.h"
#include "fuzz_util.h"

namespace {
std::string names(int n) {
  std::string s;
  for (int i = 0; i < n; ++i) s += "c" + std::to_string(i) + "\n";
  return s;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  using dinv::fuzz::write_temp;
  static const bool ready = [] {
    write_temp("batches.meta.txt", names(10));
    write_temp("fine_label_names.txt", names(100));
    write_temp("coarse_label_names.txt", names(20));
    write_temp("class_names.txt", names(10));
    return true;
  }();
  (void)ready;
  const std::string dir = dinv::fuzz::temp_dir();
  try {
    switch (data[0] % 3) {
      case 0:
        write_temp("data_batch_1.bin", data + 1, size - 1);
        (void)dinv::data::open_cifar10(dir, "train")->size();
        break;
      case 1:
        write_temp("train.bin", data + 1, size - 1);
        (void)dinv::data::open_cifar100(dir, "train", (data[0] & 4) ? "coarse" : "fine")->size();
        break;
      default: {
        // The label file: as many bytes as the data says images (when it can).
        const std::size_t labels = size > 2 ? data[1] % 8 : 0;
        write_temp("train_y.bin", data + 1, std::min(labels, size - 1));
        write_temp("train_X.bin", data + 1 + std::min(labels, size - 1), size - 1 - std::min(labels, size - 1));
        (void)dinv::data::open_stl10(dir, "train")->size();
      }
    }
  } catch (const dinv::Error&) {
  }
  return 0;
}
