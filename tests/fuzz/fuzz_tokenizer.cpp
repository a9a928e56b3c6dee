// The CLIP tokenizer: with DINV_FUZZ_TOKENIZER naming a tokenizer/ folder
// (scripts/fuzz.sh makes one with `dinv model init`), the input is prompt
// text (first byte even) or a vocab.json read with that folder's merges
// (first byte odd); without it, only vocab.json with a one-line merge list.
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "dinv/core/error.h"
#include "dinv/sd/tokenizer.h"
#include "fuzz_util.h"

namespace {
std::unique_ptr<dinv::sd::ClipTokenizer> g_tokenizer;
std::string g_merges = "#version: 0.2\na b\n";

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}
}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  if (const char* dir = std::getenv("DINV_FUZZ_TOKENIZER")) {
    g_tokenizer = std::make_unique<dinv::sd::ClipTokenizer>(dinv::sd::ClipTokenizer::from_folder(dir));
    g_merges = slurp(std::string(dir) + "/merges.txt");
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  try {
    if (!(data[0] & 1) && g_tokenizer) {
      const std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
      (void)g_tokenizer->encode(text);
    } else {
      static const bool merges = [] {
        dinv::fuzz::write_temp("merges.txt", g_merges);
        return true;
      }();
      (void)merges;
      dinv::fuzz::write_temp("vocab.json", data + 1, size - 1);
      (void)dinv::sd::ClipTokenizer::from_folder(dinv::fuzz::temp_dir()).encode("a photo of a cat");
    }
  } catch (const dinv::Error&) {
  }
  return 0;
}
