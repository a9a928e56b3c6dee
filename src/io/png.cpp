// PNG writer: signature, IHDR, one IDAT holding a zlib stream of stored
// deflate blocks (filter type 0 on every row), IEND. CRC-32 and Adler-32 are
// computed here (PNG specification, RFC 1950/1951).
#include "dinv/io/png.h"

#include <array>
#include <cstdint>
#include <fstream>
#include <vector>

#include <ATen/ATen.h>

#include "dinv/core/error.h"

namespace dinv::io {

namespace {

using Bytes = std::vector<std::uint8_t>;

std::uint32_t crc32(const std::uint8_t* data, std::size_t n, std::uint32_t crc = 0) {
  static const auto table = [] {
    std::array<std::uint32_t, 256> t{};
    for (std::uint32_t i = 0; i < 256; ++i) {
      std::uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  crc = ~crc;
  for (std::size_t i = 0; i < n; ++i) crc = table[(crc ^ data[i]) & 0xff] ^ (crc >> 8);
  return ~crc;
}

std::uint32_t adler32(const Bytes& data) {
  std::uint32_t a = 1, b = 0;
  for (std::uint8_t v : data) {
    a = (a + v) % 65521;
    b = (b + a) % 65521;
  }
  return (b << 16) | a;
}

void put_u32(Bytes& out, std::uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<std::uint8_t>(v >> s));
}

void put_chunk(Bytes& out, const char* type, const Bytes& body) {
  put_u32(out, static_cast<std::uint32_t>(body.size()));
  const std::size_t start = out.size();
  out.insert(out.end(), type, type + 4);
  out.insert(out.end(), body.begin(), body.end());
  put_u32(out, crc32(out.data() + start, out.size() - start));
}

// A zlib stream of stored deflate blocks (at most 65535 bytes each).
Bytes zlib_stored(const Bytes& raw) {
  Bytes z = {0x78, 0x01};
  std::size_t pos = 0;
  do {
    const std::size_t n = std::min<std::size_t>(65535, raw.size() - pos);
    const bool last = pos + n == raw.size();
    z.push_back(last ? 1 : 0);
    z.push_back(static_cast<std::uint8_t>(n & 0xff));
    z.push_back(static_cast<std::uint8_t>(n >> 8));
    z.push_back(static_cast<std::uint8_t>(~n & 0xff));
    z.push_back(static_cast<std::uint8_t>((~n >> 8) & 0xff));
    z.insert(z.end(), raw.begin() + static_cast<std::ptrdiff_t>(pos),
             raw.begin() + static_cast<std::ptrdiff_t>(pos + n));
    pos += n;
  } while (pos < raw.size());
  put_u32(z, adler32(raw));
  return z;
}

}  // namespace

void write_png(const std::string& path, const at::Tensor& image) {
  at::Tensor img = image.dim() == 2 ? image.unsqueeze(2) : image;
  if (img.scalar_type() != at::kByte || img.dim() != 3 || (img.size(2) != 1 && img.size(2) != 3) || img.size(0) < 1 ||
      img.size(1) < 1)
    throw Error("write_png " + path + ": expected a uint8 image [H, W, 3] or [H, W, 1], got " +
                std::string(c10::toString(image.scalar_type())) + " with " + std::to_string(image.dim()) + " dims");
  img = img.to(at::kCPU).contiguous();
  const auto h = img.size(0), w = img.size(1), c = img.size(2);
  Bytes raw;
  raw.reserve(static_cast<std::size_t>(h * (w * c + 1)));
  const std::uint8_t* p = img.data_ptr<std::uint8_t>();
  for (std::int64_t y = 0; y < h; ++y) {
    raw.push_back(0);  // filter type: none
    raw.insert(raw.end(), p + y * w * c, p + (y + 1) * w * c);
  }
  Bytes ihdr;
  put_u32(ihdr, static_cast<std::uint32_t>(w));
  put_u32(ihdr, static_cast<std::uint32_t>(h));
  ihdr.insert(ihdr.end(), {8, static_cast<std::uint8_t>(c == 3 ? 2 : 0), 0, 0, 0});  // 8 bit, RGB or grey
  Bytes file = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  put_chunk(file, "IHDR", ihdr);
  put_chunk(file, "IDAT", zlib_stored(raw));
  put_chunk(file, "IEND", {});
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(file.data()), static_cast<std::streamsize>(file.size()));
  if (!out) throw IoError("cannot write PNG file '" + path + "'");
}

}  // namespace dinv::io
