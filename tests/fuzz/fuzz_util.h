// Helpers of the libFuzzer targets: readers that take a path get the input
// as a file in a private temporary folder (tmpfs when /dev/shm exists).
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstdio>
#include <string>

namespace dinv::fuzz {

inline const std::string& temp_dir() {
  static const std::string dir = [] {
    std::string t = (access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp") + std::string("/dinv-fuzz-XXXXXX");
    if (!mkdtemp(t.data())) std::abort();
    return t;
  }();
  return dir;
}

inline std::string write_temp(const std::string& name, const std::uint8_t* data, std::size_t size) {
  const std::string path = temp_dir() + "/" + name;
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) std::abort();
  if (size && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
  return path;
}

inline std::string write_temp(const std::string& name, const std::string& text) {
  return write_temp(name, reinterpret_cast<const std::uint8_t*>(text.data()), text.size());
}

}  // namespace dinv::fuzz
