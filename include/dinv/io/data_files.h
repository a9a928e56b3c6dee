// Files that dinv ships beside its executable (docs/architecture.md, "Data files
// and installation"): `<prefix>/share/dinv/` for an installed dinv
// (`<prefix>/bin/dinv`), `<build>/share/dinv/` in a build tree. dinv finds them
// from the path of its own executable, so an install can be moved as a whole,
// and checks every file against the sha256 declared here before using it.
#pragma once

#include <string>

namespace dinv::io {

struct DataFile {
  const char* path;    // relative to the data directory
  const char* sha256;  // of the file's bytes, 64 lowercase hex digits
  const char* what;    // for messages
};

// OpenAI CLIP's byte-pair-encoding merge list (MIT), from which `dinv model
// init` writes tokenizer/ folders.
extern const DataFile kClipMerges;

// The data directory: the first of <exe dir>/../share/dinv and <exe dir>/share/dinv
// that exists. IoError naming both places when neither does.
std::string data_directory();

// The absolute path of `file`, after checking that it exists and that its
// sha256 is the declared one. IoError naming the file and the expected sha256.
std::string data_file_path(const DataFile& file);

}  // namespace dinv::io
