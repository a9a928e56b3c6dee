// MedMNIST .npz files: the zip reader (central directory, zip64 fields,
// stored and deflated members, CRC) and the .npy header parser.
#include <cstdint>
#include <string>

#include "dinv/core/error.h"
#include "dinv/data/readers.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = dinv::fuzz::write_temp("fuzz.npz", data, size);
  try {
    const auto d = dinv::data::open_medmnist(path, "train");
    if (d->size() > 0) (void)d->get(0);
  } catch (const dinv::Error&) {
  }
  return 0;
}
