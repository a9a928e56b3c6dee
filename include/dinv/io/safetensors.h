// safetensors files (https://github.com/huggingface/safetensors format):
// an 8-byte little-endian header length, a JSON header naming each tensor's
// dtype, shape and byte range, then the raw data. Reading validates the whole
// header (JSON, dtypes, shapes, offsets inside the file, no overlaps) and
// memory-maps the data; tensors share the mapping (no copy) where possible.
// Nothing here ever executes code from a file.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

namespace dinv::io {

struct TensorInfo {
  std::string name;
  at::ScalarType dtype;  // F32, F16, BF16 (and I64, I32, U8, BOOL for tools)
  std::vector<std::int64_t> shape;
  std::uint64_t begin = 0, end = 0;  // byte range within the data section
};

class SafetensorsFile {
 public:
  // Opens and validates; throws IoError naming the file and what is wrong.
  explicit SafetensorsFile(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(SafetensorsFile&&) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&&) noexcept;

  const std::string& path() const;
  const std::vector<TensorInfo>& tensors() const;  // in file order
  bool contains(const std::string& name) const;
  const TensorInfo& info(const std::string& name) const;       // IoError if absent
  const std::map<std::string, std::string>& metadata() const;  // "__metadata__"
  // A CPU tensor viewing the mapped bytes (kept alive by the tensor itself).
  at::Tensor tensor(const std::string& name) const;
  // Read a tensor's bytes into `dst`, which must have the file's dtype and
  // shape (IoError naming the file, tensor, expected and found otherwise).
  // A contiguous CPU `dst` is filled straight from the file, so loading a
  // model never holds a second copy of the weights.
  void read_into(const std::string& name, at::Tensor& dst) const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

// Every tensor of a file, by name.
std::map<std::string, at::Tensor> read_safetensors(const std::string& path);
// Write tensors (sorted by name, as the reference writer does) with optional metadata.
void write_safetensors(const std::string& path, const std::map<std::string, at::Tensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace dinv::io
