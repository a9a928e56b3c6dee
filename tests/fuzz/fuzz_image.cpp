// PNG and JPEG decoding (libpng, libjpeg-turbo) as image folders use it:
// the first byte picks the decoder, the rest is the file.
#include <cstdint>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "dinv/core/error.h"
#include "dinv/data/codec.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::vector<std::uint8_t> bytes(data + 1, data + size);
  try {
    const at::Tensor img =
        (data[0] & 1) ? dinv::data::decode_jpeg(bytes, "fuzz.jpg") : dinv::data::decode_png(bytes, "fuzz.png");
    if (img.numel() > 0) (void)img.sum().item<std::int64_t>();
  } catch (const dinv::IoError&) {
  }
  return 0;
}
