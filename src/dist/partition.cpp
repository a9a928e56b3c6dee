#include "dinv/dist/partition.h"

#include <string>

#include "dinv/core/error.h"

namespace dinv::dist {

std::string range_text(const Range& r) { return "[" + std::to_string(r.begin) + ", " + std::to_string(r.end) + ")"; }

Range block_of(std::int64_t count, int parts, int part) {
  if (count < 0 || parts < 1 || part < 0 || part >= parts)
    throw Error("internal: block_of(count=" + std::to_string(count) + ", parts=" + std::to_string(parts) +
                ", part=" + std::to_string(part) + ")");
  const std::int64_t base = count / parts, extra = count % parts;
  const std::int64_t begin = part * base + std::min<std::int64_t>(part, extra);
  return {begin, begin + base + (part < extra ? 1 : 0)};
}

std::int64_t chunk_count(std::int64_t total, std::int64_t chunk_size) {
  if (chunk_size < 1) throw Error("internal: chunk size must be >= 1");
  return (total + chunk_size - 1) / chunk_size;
}

Range chunk(std::int64_t total, std::int64_t chunk_size, std::int64_t index) {
  const std::int64_t begin = index * chunk_size;
  if (index < 0 || begin >= total)
    throw Error("internal: chunk " + std::to_string(index) + " of " + std::to_string(total) + " items");
  return {begin, std::min(total, begin + chunk_size)};
}

std::vector<std::int64_t> units_of_rank(std::int64_t unit_count, int size, int rank) {
  const Range r = block_of(unit_count, size, rank);
  std::vector<std::int64_t> units;
  for (auto u = r.begin; u < r.end; ++u) units.push_back(u);
  return units;
}

std::int64_t max_units_per_rank(std::int64_t unit_count, int size) { return block_of(unit_count, size, 0).size(); }

}  // namespace dinv::dist
