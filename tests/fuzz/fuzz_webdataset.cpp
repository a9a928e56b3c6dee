// WebDataset shards: the input is one .tar shard (ustar headers, members
// grouped by key into an image and an optional .cls label). The shard is
// scanned when it opens; the first samples are read and decoded, as a
// retrieval pool's first chunk would be.
#include <cstdint>
#include <string>

#include "dinv/core/error.h"
#include "dinv/data/readers.h"
#include "fuzz_util.h"

#include <ATen/ATen.h>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto shard = dinv::fuzz::write_temp("shard.tar", data, size);
  try {
    const auto pool = dinv::data::open_webdataset(shard);
    (void)pool->fingerprint();
    (void)pool->describe();
    for (std::int64_t i = 0; i < pool->size() && i < 4; ++i) (void)pool->get(i);
  } catch (const dinv::Error&) {
  }
  return 0;
}
