// Seeds of independent random streams (docs/architecture.md, "Same bytes on any rank count"): every work unit
// draws from its own generator seeded from (run seed, stage, unit id, ...), so
// results never depend on how units are spread over ranks or batched.
#pragma once

#include <cstdint>
#include <initializer_list>

namespace dinv {

class Config;
class ConfigSchema;

// run.seed, the seed every stream of a run derives from: declared here, where
// the streams are, and read by every stage that draws (data, embed, generate,
// train, pretrain) through run_seed.
void register_run_seed(ConfigSchema& schema);
std::uint64_t run_seed(const Config& config);

// Stage identifiers that enter the seed (never renumber: stores depend on them).
enum class Stage : std::uint64_t { embed = 1, generate = 2, train = 3, data = 4, pretrain = 5, example = 6 };

// splitmix64 finaliser: a well-mixed 64-bit function of its input.
constexpr std::uint64_t mix64(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// The seed of stream (run_seed, stage, ids...).
inline std::uint64_t stream_seed(std::uint64_t run_seed, Stage stage, std::initializer_list<std::uint64_t> ids) {
  std::uint64_t h = mix64(run_seed ^ mix64(static_cast<std::uint64_t>(stage)));
  for (auto id : ids) h = mix64(h ^ mix64(id + 0x632BE59BD9B4E019ull));
  return h;
}

}  // namespace dinv
