// A small, explicit, portable random generator for data work (sampling,
// augmentation, procedural images). Its streams are defined here, not by a
// library version, so a seed gives the same data on every machine and build.
// xoshiro256** seeded through splitmix64 (Blackman & Vigna).
#pragma once

#include <cmath>
#include <cstdint>
#include <initializer_list>

namespace dinv::data {

inline std::uint64_t splitmix64(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// One 64-bit seed from several parts, e.g. (run seed, epoch, example index):
// every unit of work gets its own stream (docs/architecture.md, "Same bytes on any rank count").
inline std::uint64_t mix_seed(std::initializer_list<std::uint64_t> parts) {
  std::uint64_t state = 0x243F6A8885A308D3ull;
  std::uint64_t out = 0;
  for (std::uint64_t p : parts) {
    state ^= p;
    out = splitmix64(state);
  }
  return out;
}

class Rng {
 public:
  explicit Rng(std::uint64_t seed = 0) {
    for (auto& word : s_) word = splitmix64(seed);
  }
  std::uint64_t next() {
    const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const std::uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }
  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  // Uniform integer in [0, n), unbiased (rejection).
  std::uint64_t below(std::uint64_t n) {
    const std::uint64_t limit = n == 0 ? 0 : (~0ull - n + 1) % n;  // 2^64 mod n
    std::uint64_t x;
    do x = next();
    while (x < limit);
    return n == 0 ? 0 : x % n;
  }
  std::int64_t integer(std::int64_t lo, std::int64_t hi) {  // inclusive range
    return lo + static_cast<std::int64_t>(below(static_cast<std::uint64_t>(hi - lo + 1)));
  }
  bool bernoulli(double p) { return uniform() < p; }
  double normal() {  // Box-Muller, one value per call (simple and exact enough)
    const double u1 = 1.0 - uniform(), u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }
  // Gamma(shape, 1) by Marsaglia-Tsang; Beta from two gammas (MixUp, CutMix).
  double gamma(double shape) {
    if (shape < 1.0) return gamma(shape + 1.0) * std::pow(uniform() + 1e-300, 1.0 / shape);
    const double d = shape - 1.0 / 3.0, c = 1.0 / std::sqrt(9.0 * d);
    for (;;) {
      double x, v;
      do {
        x = normal();
        v = 1.0 + c * x;
      } while (v <= 0.0);
      v = v * v * v;
      const double u = uniform();
      if (u < 1.0 - 0.0331 * x * x * x * x) return d * v;
      if (std::log(u) < 0.5 * x * x + d * (1.0 - v + std::log(v))) return d * v;
    }
  }
  double beta(double a, double b) {
    const double x = gamma(a), y = gamma(b);
    return x / (x + y);
  }

 private:
  static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  std::uint64_t s_[4];
};

}  // namespace dinv::data
