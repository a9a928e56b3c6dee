// Image folders, structure-aware: the input builds a folder tree, which the
// reader then opens and decodes (the decoders have their own target,
// fuzz_image). Each entry is [kind, class, name, size] followed by `size`
// content bytes: a file in a class folder or at the top, an empty class
// folder, or a symbolic link (to itself, to the top folder, to a missing path,
// to another entry) in place of a class folder or a file. Names come from a
// fixed list with upper-case and odd extensions, so that the tree stays inside
// the fuzzer's private folder.
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>

#include "dinv/core/error.h"
#include "dinv/data/readers.h"
#include "fuzz_util.h"

#include <ATen/ATen.h>

namespace {

const char* const kClasses[] = {"cat", "dog", ".hidden", "a b", "ünï"};
const char* const kFiles[] = {"0.png", "1.PNG", "2.jpg", "3.JPEG", "4.txt", "5", ".png", "6.png.jpg"};

class Bytes {
 public:
  Bytes(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}
  std::uint8_t next() { return at_ < size_ ? data_[at_++] : 0; }
  std::string take(std::size_t n) {
    n = std::min(n, size_ - at_);
    std::string s(reinterpret_cast<const char*>(data_ + at_), n);
    at_ += n;
    return s;
  }
  bool empty() const { return at_ >= size_; }

 private:
  const std::uint8_t* data_;
  std::size_t size_, at_ = 0;
};

// Remove a tree without std::filesystem (libtorch's remove_all has crashed here).
void remove_tree(const std::string& path) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) return;
  if (S_ISDIR(st.st_mode)) {
    if (DIR* d = opendir(path.c_str())) {
      while (const dirent* e = readdir(d)) {
        const std::string name = e->d_name;
        if (name != "." && name != "..") remove_tree(path + "/" + name);
      }
      closedir(d);
    }
    rmdir(path.c_str());
  } else {
    unlink(path.c_str());
  }
}

void write_file(const std::string& path, const std::string& bytes) {
  if (std::FILE* f = std::fopen(path.c_str(), "wb")) {
    std::fwrite(bytes.data(), 1, bytes.size(), f);
    std::fclose(f);
  }
}

void build_tree(const std::string& root, Bytes& in) {
  mkdir(root.c_str(), 0755);
  for (int i = 0; i < 12 && !in.empty(); ++i) {
    const std::uint8_t kind = in.next(), cls = in.next(), name = in.next(), size = in.next();
    const std::string dir = root + "/" + kClasses[cls % 5];
    const std::string file = dir + "/" + kFiles[name % 8];
    const std::string content = in.take(size);
    switch (kind % 6) {
      case 0:  // an image (or not) in a class folder
        mkdir(dir.c_str(), 0755);
        write_file(file, content);
        break;
      case 1:  // an empty class folder
        mkdir(dir.c_str(), 0755);
        break;
      case 2:  // a file at the top, beside the class folders
        write_file(root + "/" + kFiles[name % 8], content);
        break;
      case 3:  // a class folder that is a link: to itself, to the top, to nothing
        symlink((name % 3 == 0 ? dir : name % 3 == 1 ? root : root + "/missing").c_str(), dir.c_str());
        break;
      case 4:  // an image that is a link: to itself, to a class folder, to nothing
        mkdir(dir.c_str(), 0755);
        symlink((size % 3 == 0 ? file : size % 3 == 1 ? dir : dir + "/missing.png").c_str(), file.c_str());
        break;
      default:  // a file where a class folder was expected
        write_file(dir, content);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string root = dinv::fuzz::temp_dir() + "/folder";
  remove_tree(root);
  Bytes in(data, size);
  build_tree(root, in);
  try {
    const auto folder = dinv::data::open_image_folder(root, "train");
    (void)folder->fingerprint();
    for (std::int64_t i = 0; i < folder->size() && i < 4; ++i) (void)folder->get(i);
  } catch (const dinv::Error&) {
  }
  return 0;
}
