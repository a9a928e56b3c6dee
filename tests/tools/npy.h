// Minimal .npy (NumPy format version 1.0) reading and writing for test tools:
// little-endian float32, float64, int64 and uint8, C order. Enough for parity
// tests to hand tensors to and from Python without another dependency.
#pragma once

#include <cstdint>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <ATen/ATen.h>

namespace dinv::test {

inline std::string npy_descr(at::ScalarType t) {
  switch (t) {
    case at::kFloat:
      return "<f4";
    case at::kDouble:
      return "<f8";
    case at::kLong:
      return "<i8";
    case at::kByte:
      return "|u1";
    default:
      throw std::runtime_error("npy: unsupported dtype");
  }
}

inline at::ScalarType npy_dtype(const std::string& descr) {
  if (descr == "<f4") return at::kFloat;
  if (descr == "<f8") return at::kDouble;
  if (descr == "<i8") return at::kLong;
  if (descr == "|u1") return at::kByte;
  throw std::runtime_error("npy: unsupported descr " + descr);
}

inline void write_npy(const std::string& path, const at::Tensor& tensor) {
  at::Tensor t = tensor.contiguous().cpu();
  std::string shape = "(";
  for (int64_t d = 0; d < t.dim(); ++d)
    shape += std::to_string(t.size(d)) + (t.dim() == 1 ? "," : (d + 1 < t.dim() ? ", " : ""));
  shape += ")";
  std::string header =
      "{'descr': '" + npy_descr(t.scalar_type()) + "', 'fortran_order': False, 'shape': " + shape + ", }";
  while ((10 + header.size() + 1) % 64) header += ' ';
  header += '\n';
  std::ofstream out(path, std::ios::binary);
  if (!out) throw std::runtime_error("npy: cannot write " + path);
  out.write("\x93NUMPY\x01\x00", 8);
  const auto len = static_cast<std::uint16_t>(header.size());
  out.put(static_cast<char>(len & 0xff));
  out.put(static_cast<char>(len >> 8));
  out << header;
  out.write(static_cast<const char*>(t.data_ptr()), static_cast<std::streamsize>(t.nbytes()));
}

inline at::Tensor read_npy(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("npy: cannot read " + path);
  char magic[10];
  in.read(magic, 10);
  if (std::memcmp(magic, "\x93NUMPY\x01", 7) != 0) throw std::runtime_error("npy: not a version 1 file: " + path);
  const auto len =
      static_cast<std::size_t>(static_cast<unsigned char>(magic[8]) | (static_cast<unsigned char>(magic[9]) << 8));
  std::string header(len, ' ');
  in.read(header.data(), static_cast<std::streamsize>(len));
  auto field = [&](const std::string& key) {
    auto p = header.find("'" + key + "':");
    if (p == std::string::npos) throw std::runtime_error("npy: no " + key + " in " + path);
    return p + key.size() + 3;
  };
  auto d0 = header.find('\'', field("descr")), d1 = header.find('\'', d0 + 1);
  const auto dtype = npy_dtype(header.substr(d0 + 1, d1 - d0 - 1));
  if (header.find("True", field("fortran_order")) < header.find(',', field("fortran_order")))
    throw std::runtime_error("npy: Fortran order not supported: " + path);
  auto s0 = header.find('(', field("shape")), s1 = header.find(')', s0);
  std::vector<int64_t> shape;
  std::stringstream ss(header.substr(s0 + 1, s1 - s0 - 1));
  std::string item;
  while (std::getline(ss, item, ','))
    if (item.find_first_not_of(' ') != std::string::npos) shape.push_back(std::stoll(item));
  at::Tensor t = at::empty(shape, at::TensorOptions().dtype(dtype));
  in.read(static_cast<char*>(t.data_ptr()), static_cast<std::streamsize>(t.nbytes()));
  if (!in) throw std::runtime_error("npy: truncated data in " + path);
  return t;
}

}  // namespace dinv::test
