#include "dinv/io/data_files.h"

#include <cstdlib>
#include <fstream>
#include <vector>

#include <sys/stat.h>
#include <unistd.h>

#include "dinv/core/error.h"
#include "dinv/io/hash.h"

namespace dinv::io {

const DataFile kClipMerges{"clip/bpe_simple_vocab_16e6.txt.gz",
                           "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a", "CLIP BPE merge list"};

namespace {

std::string executable_directory() {
  std::vector<char> buf(4096);
  const ssize_t n = readlink("/proc/self/exe", buf.data(), buf.size() - 1);
  if (n <= 0) throw IoError("cannot locate the dinv executable (/proc/self/exe unreadable), so not its data files");
  const std::string exe(buf.data(), static_cast<std::size_t>(n));
  return exe.substr(0, exe.rfind('/'));
}

// The canonical path of a directory, or "" when there is none.
std::string existing_directory(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) return "";
  char* resolved = realpath(path.c_str(), nullptr);
  if (!resolved) return "";
  std::string out(resolved);
  std::free(resolved);
  return out;
}

std::string sha256_of_file(const std::string& path, const DataFile& file) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw IoError(std::string("missing data file ") + path + " (" + file.what + ", expected sha256 " + file.sha256 +
                  "): reinstall dinv, or copy the file from the repository");
  Sha256 sha;
  std::vector<char> buf(1 << 16);
  while (in.read(buf.data(), static_cast<std::streamsize>(buf.size())) || in.gcount() > 0)
    sha.update(buf.data(), static_cast<std::size_t>(in.gcount()));
  if (in.bad()) throw IoError("cannot read data file " + path + " (" + file.what + ")");
  return sha.hex_digest();
}

}  // namespace

std::string data_directory() {
  const std::string bin = executable_directory();
  const std::string installed = bin + "/../share/dinv";  // <prefix>/bin/dinv
  const std::string build_tree = bin + "/share/dinv";    // <build>/dinv
  for (const std::string& candidate : {installed, build_tree})
    if (std::string dir = existing_directory(candidate); !dir.empty()) return dir;
  throw IoError("dinv's data directory is missing: looked for " + installed + " and " + build_tree +
                " (install dinv with `cmake --install`, or run it from its build folder)");
}

std::string data_file_path(const DataFile& file) {
  const std::string path = data_directory() + "/" + file.path;
  const std::string actual = sha256_of_file(path, file);
  if (actual != file.sha256)
    throw IoError(std::string("corrupt data file ") + path + " (" + file.what + "): sha256 " + actual + ", expected " +
                  file.sha256 + ": reinstall dinv, or copy the file from the repository");
  return path;
}

}  // namespace dinv::io
