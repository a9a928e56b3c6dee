// Hashes for fingerprints: SHA-256 (configs, final digests) and the fast
// weight hash of model fingerprints.
//
// Weight hash ("dinv-wh1"): the bytes are cut into 4 MiB chunks; each chunk is
// hashed with XXH64 (seed = chunk index), in parallel over the chunks; the
// chunk digests (8 bytes little-endian each) and the total length are fed, in
// order, into SHA-256. It runs at memory bandwidth on all cores and detects
// any change to the bytes (it is not meant to resist an adversary: the
// fingerprint guards against using the wrong model, not against attacks).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace dinv::io {

class Sha256 {
 public:
  Sha256();
  void update(const void* data, std::size_t size);
  void update(const std::string& s) { update(s.data(), s.size()); }
  std::array<std::uint8_t, 32> digest();  // finishes the hash
  std::string hex_digest();               // 64 lowercase hex characters

 private:
  void block(const std::uint8_t* p);
  std::array<std::uint32_t, 8> h_;
  std::array<std::uint8_t, 64> buf_;
  std::size_t buf_len_ = 0;
  std::uint64_t total_ = 0;
};

std::string sha256_hex(const std::string& data);

// XXH64 of a buffer (the reference algorithm of xxHash).
std::uint64_t xxh64(const void* data, std::size_t size, std::uint64_t seed = 0);

// Feed `size` bytes into `sha` the dinv-wh1 way (chunked XXH64, parallel).
void weight_hash_update(Sha256& sha, const void* data, std::size_t size);

}  // namespace dinv::io
