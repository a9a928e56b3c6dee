// Whole-file reads and atomic replacement, the two file idioms the stages,
// the trainer and the CLI share. Errors are IoError naming the file and why.
#pragma once

#include <string>

namespace dinv::io {

// The bytes of a file ("cannot read PATH: reason" when it cannot be opened or read).
std::string read_text_file(const std::string& path);
// Move `tmp` onto `path` in one rename: a reader sees the old file or the new
// one, never half of one. `what` names the file in the error ("checkpoint").
void replace_file(const std::string& tmp, const std::string& path, const std::string& what = "");
// Write `text` to `path`.tmp, then replace_file onto `path`.
void write_text_atomic(const std::string& path, const std::string& text);

}  // namespace dinv::io
