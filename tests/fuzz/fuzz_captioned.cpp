// Captioned folders: the input is metadata.jsonl, read against a folder that
// holds two valid PNGs of one size (a.png, b.png), one of another size
// (c.png) and a file that is not an image (d.png). The first example is
// decoded when the corpus opens, as pretrain's first batch would.
#include <cstdint>
#include <string>

#include "dinv/core/error.h"
#include "dinv/data/captioned.h"
#include "dinv/data/codec.h"
#include "fuzz_util.h"

#include <ATen/ATen.h>

namespace {
void write_png(const std::string& name, std::int64_t side) {
  dinv::data::write_png(dinv::fuzz::temp_dir() + "/" + name, at::full({side, side, 3}, 7, at::kByte));
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const bool ready = [] {
    write_png("a.png", 4);
    write_png("b.png", 4);
    write_png("c.png", 6);
    dinv::fuzz::write_temp("d.png", std::string("not an image"));
    return true;
  }();
  (void)ready;
  dinv::fuzz::write_temp("metadata.jsonl", data, size);
  try {
    const auto corpus = dinv::data::open_captioned(dinv::fuzz::temp_dir());
    (void)corpus->fingerprint();
    if (corpus->size() > 0) (void)corpus->get(0);
  } catch (const dinv::Error&) {
  }
  return 0;
}
