// Work distribution (docs/architecture.md, "Same bytes on any rank count"). Work is cut into global units whose
// boundaries depend only on the problem (never on the rank count); ranks then
// take contiguous, balanced blocks of units. Contiguous blocks keep each rank's
// HDF5 hyperslabs contiguous too.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dinv::dist {

struct Range {
  std::int64_t begin = 0, end = 0;  // [begin, end)
  std::int64_t size() const { return end - begin; }
  bool empty() const { return end <= begin; }
  bool contains(std::int64_t i) const { return i >= begin && i < end; }
};

// "[18, 24)", for messages.
std::string range_text(const Range& r);

// Units [0, count) cut into `parts` contiguous blocks whose sizes differ by at
// most one (the first `count % parts` blocks get the extra unit); block `part`.
Range block_of(std::int64_t count, int parts, int part);

// Items [0, total) cut into fixed chunks of `chunk_size` (the last may be
// shorter): the global work units of a data-parallel stage.
std::int64_t chunk_count(std::int64_t total, std::int64_t chunk_size);
Range chunk(std::int64_t total, std::int64_t chunk_size, std::int64_t index);

// The units rank `rank` of `size` works on, in order.
std::vector<std::int64_t> units_of_rank(std::int64_t unit_count, int size, int rank);

// The most units any rank holds: the number of collective rounds of a stage.
std::int64_t max_units_per_rank(std::int64_t unit_count, int size);

}  // namespace dinv::dist
