#include "dinv/io/files.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "dinv/core/error.h"

namespace dinv::io {

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError("cannot read " + path + ": " + std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw IoError("cannot read " + path + ": read error");
  return text.str();
}

void replace_file(const std::string& tmp, const std::string& path, const std::string& what) {
  if (std::rename(tmp.c_str(), path.c_str()) != 0)
    throw IoError("cannot move " + (what.empty() ? "" : what + " ") + tmp + " to " + path + ": " +
                  std::strerror(errno));
}

void write_text_atomic(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
    if (!out.flush()) throw IoError(tmp + ": cannot write");
  }
  replace_file(tmp, path);
}

}  // namespace dinv::io
