// MedMNIST .npz: a zip archive (stored or deflated members, zip64 as numpy
// writes it) of .npy arrays. Parsed here; deflate through zlib.
#include <ATen/ATen.h>
#include <zlib.h>

#include <cstring>
#include <map>

#include "dinv/core/error.h"
#include "dinv/data/readers.h"

namespace dinv::data {
namespace {

std::uint64_t le(const std::vector<std::uint8_t>& b, std::size_t at, int bytes) {
  std::uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | b[at + i];
  return v;
}

struct Member {
  std::string name;
  int method = 0;
  std::uint64_t compressed = 0, size = 0, local_offset = 0;
  std::uint32_t crc = 0;
};

class Zip {
 public:
  explicit Zip(std::string path) : path_(std::move(path)), bytes_(read_file_bytes(path_)) { read_directory(); }
  bool has(const std::string& name) const { return members_.count(name) > 0; }
  std::vector<std::uint8_t> extract(const std::string& name) const;
  const std::string& path() const { return path_; }
  const std::vector<std::uint8_t>& bytes() const { return bytes_; }

 private:
  void need(std::uint64_t at, std::uint64_t count, const std::string& what) const {
    if (at + count > bytes_.size())
      throw IoError("'" + path_ + "': truncated zip archive: " + what + " needs bytes " + std::to_string(at) + ".." +
                    std::to_string(at + count) + ", file has " + std::to_string(bytes_.size()) + " bytes");
  }
  void read_directory();
  std::string path_;
  std::vector<std::uint8_t> bytes_;
  std::map<std::string, Member> members_;
};

void Zip::read_directory() {
  // End of central directory: signature 0x06054b50 within the last 64 KiB + 22 bytes.
  if (bytes_.size() < 22) throw IoError("'" + path_ + "': " + std::to_string(bytes_.size()) + " bytes, too small for a zip archive (at least 22)");
  std::size_t eocd = bytes_.size() - 22;
  while (le(bytes_, eocd, 4) != 0x06054b50) {
    if (eocd == 0 || bytes_.size() - eocd > 65557)
      throw IoError("'" + path_ + "': not a zip archive (no end-of-central-directory record; truncated file?)");
    --eocd;
  }
  const std::uint64_t count = le(bytes_, eocd + 10, 2);
  std::uint64_t at = le(bytes_, eocd + 16, 4);
  for (std::uint64_t i = 0; i < count; ++i) {
    need(at, 46, "central directory entry " + std::to_string(i));
    if (le(bytes_, at, 4) != 0x02014b50)
      throw IoError("'" + path_ + "': bad central directory signature at byte " + std::to_string(at));
    Member m;
    m.method = static_cast<int>(le(bytes_, at + 10, 2));
    m.crc = static_cast<std::uint32_t>(le(bytes_, at + 16, 4));
    m.compressed = le(bytes_, at + 20, 4);
    m.size = le(bytes_, at + 24, 4);
    const auto name_len = le(bytes_, at + 28, 2), extra_len = le(bytes_, at + 30, 2), comment_len = le(bytes_, at + 32, 2);
    m.local_offset = le(bytes_, at + 42, 4);
    need(at + 46, name_len + extra_len, "central directory entry " + std::to_string(i));
    m.name.assign(bytes_.begin() + at + 46, bytes_.begin() + at + 46 + name_len);
    // Zip64 extra field (id 1): 64-bit values for the fields that read 0xFFFFFFFF, in order.
    for (std::uint64_t e = at + 46 + name_len; e + 4 <= at + 46 + name_len + extra_len;) {
      const auto id = le(bytes_, e, 2), len = le(bytes_, e + 2, 2);
      std::uint64_t f = e + 4;
      if (id == 1) {
        if (m.size == 0xFFFFFFFF) m.size = le(bytes_, f, 8), f += 8;
        if (m.compressed == 0xFFFFFFFF) m.compressed = le(bytes_, f, 8), f += 8;
        if (m.local_offset == 0xFFFFFFFF) m.local_offset = le(bytes_, f, 8);
      }
      e += 4 + len;
    }
    members_[m.name] = m;
    at += 46 + name_len + extra_len + comment_len;
  }
}

std::vector<std::uint8_t> Zip::extract(const std::string& name) const {
  const Member& m = members_.at(name);
  need(m.local_offset, 30, "local header of '" + name + "'");
  const auto data = m.local_offset + 30 + le(bytes_, m.local_offset + 26, 2) + le(bytes_, m.local_offset + 28, 2);
  need(data, m.compressed, "member '" + name + "' (" + std::to_string(m.compressed) + " bytes)");
  std::vector<std::uint8_t> out(m.size);
  if (m.method == 0) {
    if (m.compressed != m.size) throw IoError("'" + path_ + "': stored member '" + name + "' sizes differ");
    std::memcpy(out.data(), bytes_.data() + data, m.size);
  } else if (m.method == 8) {
    z_stream z{};
    inflateInit2(&z, -MAX_WBITS);  // raw deflate, as zip stores it
    z.next_in = const_cast<Bytef*>(bytes_.data() + data);
    z.avail_in = static_cast<uInt>(m.compressed);
    z.next_out = out.data();
    z.avail_out = static_cast<uInt>(m.size);
    const int rc = inflate(&z, Z_FINISH);
    const auto produced = z.total_out;
    inflateEnd(&z);
    if (rc != Z_STREAM_END || produced != m.size)
      throw IoError("'" + path_ + "': member '" + name + "' does not inflate to its " + std::to_string(m.size) +
                    " bytes (zlib code " + std::to_string(rc) + ", got " + std::to_string(produced) + ")");
  } else {
    throw IoError("'" + path_ + "': member '" + name + "' uses zip method " + std::to_string(m.method) +
                  ", expected 0 (stored) or 8 (deflate)");
  }
  if (crc32(0L, out.data(), static_cast<uInt>(out.size())) != m.crc)
    throw IoError("'" + path_ + "': member '" + name + "' fails its CRC-32 check (corrupt file)");
  return out;
}

// A .npy array: header dict {'descr', 'fortran_order', 'shape'}, then C-order data.
at::Tensor parse_npy(const std::vector<std::uint8_t>& b, const std::string& where) {
  if (b.size() < 10 || std::memcmp(b.data(), "\x93NUMPY", 6) != 0)
    throw IoError(where + ": not a .npy array (bad magic)");
  const int major = b[6];
  const std::size_t len_bytes = major == 1 ? 2 : 4, start = 8 + len_bytes;
  const std::size_t header_len = le(b, 8, static_cast<int>(len_bytes));
  if (start + header_len > b.size()) throw IoError(where + ": truncated .npy header");
  const std::string header(b.begin() + start, b.begin() + start + header_len);
  auto field = [&](const std::string& key) {
    const auto k = header.find("'" + key + "'");
    if (k == std::string::npos) throw IoError(where + ": .npy header lacks '" + key + "': " + header);
    return header.substr(header.find(':', k) + 1);
  };
  if (field("fortran_order").find("True") < field("fortran_order").find(','))
    throw IoError(where + ": Fortran-order arrays are not supported");
  std::string descr = field("descr");
  descr = descr.substr(descr.find('\'') + 1);
  descr = descr.substr(0, descr.find('\''));
  static const std::map<std::string, at::ScalarType> types{{"|u1", at::kByte}, {"|i1", at::kChar}, {"<i2", at::kShort},
                                                           {"<i4", at::kInt},  {"<i8", at::kLong}, {"<u8", at::kLong},
                                                           {"|b1", at::kBool}};
  if (!types.count(descr)) throw IoError(where + ": dtype '" + descr + "' is not supported (expected uint8 or integer)");
  std::string shape_text = field("shape");
  shape_text = shape_text.substr(shape_text.find('(') + 1, shape_text.find(')') - shape_text.find('(') - 1);
  std::vector<std::int64_t> shape;
  std::int64_t count = 1;
  for (std::size_t p = 0; p < shape_text.size();) {
    const auto q = shape_text.find(',', p);
    const std::string part = shape_text.substr(p, q == std::string::npos ? std::string::npos : q - p);
    if (part.find_first_of("0123456789") != std::string::npos) shape.push_back(std::stoll(part)), count *= shape.back();
    if (q == std::string::npos) break;
    p = q + 1;
  }
  const auto element = at::elementSize(types.at(descr));
  const std::size_t data_bytes = static_cast<std::size_t>(count) * element;
  if (b.size() - start - header_len != data_bytes)
    throw IoError(where + ": array of shape (" + shape_text + ") needs " + std::to_string(data_bytes) + " data bytes, found " +
                  std::to_string(b.size() - start - header_len));
  return at::from_blob(const_cast<std::uint8_t*>(b.data() + start + header_len), shape, types.at(descr)).clone();
}

at::Tensor load_member(const Zip& zip, const std::string& key) {
  if (!zip.has(key + ".npy")) throw IoError("'" + zip.path() + "': no array '" + key + "' in the .npz archive");
  return parse_npy(zip.extract(key + ".npy"), "'" + zip.path() + "' array '" + key + "'");
}

}  // namespace

DatasetPtr open_medmnist(const std::string& npz_path, const std::string& split) {
  Zip zip(npz_path);
  auto images = load_member(zip, split + "_images");
  auto labels = load_member(zip, split + "_labels");
  if (images.scalar_type() != at::kByte || (images.dim() != 3 && !(images.dim() == 4 && images.size(3) == 3)))
    throw IoError("'" + npz_path + "' array '" + split + "_images': expected uint8 [N, H, W] or [N, H, W, 3], found " +
                  c10::str(images.sizes()));
  if (images.dim() == 3) images = images.unsqueeze(3).expand({-1, -1, -1, 3}).contiguous();  // gray -> RGB
  if (labels.dim() == 2 && labels.size(1) == 1) labels = labels.squeeze(1);
  if (labels.dim() != 1)
    throw IoError("'" + npz_path + "' array '" + split + "_labels': expected [N] or [N, 1] (multi-label is not supported), found " +
                  c10::str(labels.sizes()));
  // Classes: one more than the largest label of any split, so that all splits agree.
  std::int64_t classes = 0;
  for (const char* s : {"train", "val", "test"})
    if (zip.has(std::string(s) + "_labels.npy"))
      classes = std::max(classes, load_member(zip, std::string(s) + "_labels").max().item<std::int64_t>() + 1);
  std::vector<std::string> names;
  for (std::int64_t c = 0; c < classes; ++c) names.push_back(std::to_string(c));
  const std::string fp = "medmnist:" + split + ":n=" + std::to_string(images.size(0)) + ":" +
                         content_hash(zip.bytes().data(), zip.bytes().size());
  const std::string desc = "MedMNIST " + split + " (" + std::to_string(images.size(0)) + " images, " +
                           std::to_string(images.size(1)) + "x" + std::to_string(images.size(2)) + ", " + npz_path + ")";
  return std::make_shared<TensorDataset>(images, labels, names, fp, desc);
}

}  // namespace dinv::data
