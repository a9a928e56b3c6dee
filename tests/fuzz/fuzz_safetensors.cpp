// safetensors files: header length, JSON header (depth cap, duplicates),
// dtypes, shapes, offsets; then every tensor is viewed and summed.
#include <cstdint>
#include <string>

#include <ATen/ATen.h>

#include "dinv/core/error.h"
#include "dinv/io/safetensors.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = dinv::fuzz::write_temp("fuzz.safetensors", data, size);
  try {
    const dinv::io::SafetensorsFile f(path);
    for (const auto& t : f.tensors()) {
      const at::Tensor v = f.tensor(t.name);
      if (v.numel() > 0 && v.numel() < (1 << 20)) (void)v.to(at::kDouble).sum().item<double>();
    }
  } catch (const dinv::IoError&) {
  }
  return 0;
}
