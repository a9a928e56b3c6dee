// Drives dinv's safetensors reader and writer from the pytest that checks them
// against the Python `safetensors` package.
//   dinv_safetensors_tool copy IN OUT   read IN (every tensor, metadata) and write OUT
//   dinv_safetensors_tool make OUT      write a fixed set of tensors of every dtype
//   dinv_safetensors_tool check IN      validate IN; exit 1 with the error otherwise
#include <iostream>

#include <ATen/ATen.h>

#include "dinv/core/error.h"
#include "dinv/io/safetensors.h"

int main(int argc, char** argv) {
  try {
    const std::string cmd = argc > 1 ? argv[1] : "";
    if (cmd == "copy" && argc == 4) {
      dinv::io::SafetensorsFile f(argv[2]);
      std::map<std::string, at::Tensor> t;
      for (const auto& ti : f.tensors()) t[ti.name] = f.tensor(ti.name);
      dinv::io::write_safetensors(argv[3], t, f.metadata());
      return 0;
    }
    if (cmd == "make" && argc == 3) {
      std::map<std::string, at::Tensor> t;
      auto x = at::arange(-12, 12, at::kDouble).div(7).reshape({2, 3, 4});
      t["f32"] = x.to(at::kFloat);
      t["f16"] = x.to(at::kHalf);
      t["bf16"] = x.to(at::kBFloat16);
      t["f64"] = x;
      t["i64"] = at::arange(-5, 5, at::kLong).mul(1000000007LL);
      t["i32"] = at::arange(-5, 5, at::kInt);
      t["i16"] = at::arange(-5, 5, at::kShort);
      t["i8"] = at::arange(-5, 5, at::kChar);
      t["u8"] = at::arange(0, 256, at::kInt).to(at::kByte);
      t["bool"] = at::arange(6) % 3 == 0;
      t["scalar"] = at::scalar_tensor(1.5f);
      t["zero_size"] = at::empty({0, 4});
      dinv::io::write_safetensors(argv[2], t, {{"format", "pt"}});
      return 0;
    }
    if (cmd == "check" && argc == 3) {
      dinv::io::SafetensorsFile f(argv[2]);
      for (const auto& ti : f.tensors()) {
        auto v = f.tensor(ti.name);
        std::cout << ti.name << " " << c10::toString(ti.dtype) << " " << v.sizes() << "\n";
      }
      return 0;
    }
    std::cerr << "usage: dinv_safetensors_tool copy IN OUT | make OUT | check IN\n";
    return 2;
  } catch (const dinv::Error& e) {
    std::cerr << e.what() << "\n";
    return 1;
  }
}
