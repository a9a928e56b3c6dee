// MedMNIST .npz: a zip archive (stored or deflated members, zip64 as numpy
// writes it) of .npy arrays. Parsed here; deflate through zlib.
#include <ATen/ATen.h>
#include <zlib.h>

#include <cstring>
#include <limits>
#include <map>

#include "dinv/core/error.h"
#include "dinv/data/readers.h"

namespace dinv::data {
namespace {

// Labels are class indices: at most this many classes (MedMNIST has up to 11).
constexpr std::int64_t kMaxClasses = 100000;

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
    if (at > bytes_.size() || count > bytes_.size() - at)
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
  if (bytes_.size() < 22)
    throw IoError("'" + path_ + "': " + std::to_string(bytes_.size()) +
                  " bytes, too small for a zip archive (at least 22)");
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
    const auto name_len = le(bytes_, at + 28, 2), extra_len = le(bytes_, at + 30, 2),
               comment_len = le(bytes_, at + 32, 2);
    m.local_offset = le(bytes_, at + 42, 4);
    need(at + 46, name_len + extra_len, "central directory entry " + std::to_string(i));
    m.name.assign(bytes_.begin() + at + 46, bytes_.begin() + at + 46 + name_len);
    // Zip64 extra field (id 1): 64-bit values for the fields that read 0xFFFFFFFF, in order.
    const std::uint64_t extra_end = at + 46 + name_len + extra_len;
    for (std::uint64_t e = at + 46 + name_len; e + 4 <= extra_end;) {
      const auto id = le(bytes_, e, 2), len = le(bytes_, e + 2, 2);
      if (e + 4 + len > extra_end)
        throw IoError("'" + path_ + "': central directory entry " + std::to_string(i) + " ('" + m.name +
                      "'): extra field of " + std::to_string(len) + " bytes runs past its entry");
      std::uint64_t f = e + 4;
      auto take = [&](std::uint64_t& field) {
        if (f + 8 > e + 4 + len)
          throw IoError("'" + path_ + "': member '" + m.name + "': zip64 extra field too short for its sizes");
        field = le(bytes_, f, 8);
        f += 8;
      };
      if (id == 1) {
        if (m.size == 0xFFFFFFFF) take(m.size);
        if (m.compressed == 0xFFFFFFFF) take(m.compressed);
        if (m.local_offset == 0xFFFFFFFF) take(m.local_offset);
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
  // The declared size is checked before it is allocated: deflate expands at
  // most 1032:1, a stored member not at all.
  const std::uint64_t most = m.method == 0 ? m.compressed : m.compressed * 1032 + 1024;
  if (m.size > most)
    throw IoError("'" + path_ + "': member '" + name + "' declares " + std::to_string(m.size) +
                  " bytes, more than its " + std::to_string(m.compressed) + " compressed bytes can hold");
  if (m.size > std::numeric_limits<uInt>::max() || m.compressed > std::numeric_limits<uInt>::max())
    throw IoError("'" + path_ + "': member '" + name + "' of " + std::to_string(m.size) +
                  " bytes is larger than the 4 GiB dinv inflates");
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

// A .npy array: header dict {'descr', 'fortran_order', 'shape'}, then C-order
// data. The header is a Python literal written by numpy; it is parsed
// strictly enough that every size is checked before anything is allocated.
at::Tensor parse_npy(const std::vector<std::uint8_t>& b, const std::string& where) {
  if (b.size() < 10 || std::memcmp(b.data(), "\x93NUMPY", 6) != 0)
    throw IoError(where + ": not a .npy array (bad magic)");
  const int major = b[6];
  if (major < 1 || major > 3)
    throw IoError(where + ": .npy format version " + std::to_string(major) + " is not supported (1, 2 or 3)");
  const std::size_t len_bytes = major == 1 ? 2 : 4, start = 8 + len_bytes;
  if (b.size() < start) throw IoError(where + ": truncated .npy header");
  const std::size_t header_len = le(b, 8, static_cast<int>(len_bytes));
  if (header_len > b.size() - start)
    throw IoError(where + ": .npy header of " + std::to_string(header_len) + " bytes runs past the " +
                  std::to_string(b.size()) + "-byte array");
  const std::string header(b.begin() + start, b.begin() + start + header_len);
  // The value text of 'key' in the dict: up to the next ',' at bracket depth 0.
  auto field = [&](const std::string& key) {
    const auto k = header.find("'" + key + "'");
    if (k == std::string::npos) throw IoError(where + ": .npy header lacks '" + key + "': " + header.substr(0, 200));
    const auto colon = header.find(':', k);
    if (colon == std::string::npos) throw IoError(where + ": .npy header: no value for '" + key + "'");
    std::size_t e = colon + 1;
    int depth = 0;
    for (; e < header.size(); ++e) {
      const char c = header[e];
      if (c == '(' || c == '[')
        ++depth;
      else if ((c == ')' || c == ']') && depth > 0)
        --depth;
      else if ((c == ',' && depth == 0) || c == '}')
        break;
    }
    std::string v = header.substr(colon + 1, e - colon - 1);
    const auto b0 = v.find_first_not_of(" \t\n"), b1 = v.find_last_not_of(" \t\n");
    return b0 == std::string::npos ? std::string() : v.substr(b0, b1 - b0 + 1);
  };
  const std::string fortran = field("fortran_order");
  if (fortran == "True") throw IoError(where + ": Fortran-order arrays are not supported");
  if (fortran != "False") throw IoError(where + ": .npy header: fortran_order is '" + fortran + "', expected False");
  std::string descr = field("descr");
  if (descr.size() < 2 || (descr.front() != '\'' && descr.front() != '"') || descr.back() != descr.front())
    throw IoError(where + ": .npy header: descr " + descr + " is not a dtype string");
  descr = descr.substr(1, descr.size() - 2);
  static const std::map<std::string, at::ScalarType> types{{"|u1", at::kByte}, {"|i1", at::kChar}, {"<i2", at::kShort},
                                                           {"<i4", at::kInt},  {"<i8", at::kLong}, {"<u8", at::kLong},
                                                           {"|b1", at::kBool}};
  if (!types.count(descr))
    throw IoError(where + ": dtype '" + descr + "' is not supported (expected uint8 or integer)");
  std::string shape_text = field("shape");
  if (shape_text.size() < 2 || shape_text.front() != '(' || shape_text.back() != ')')
    throw IoError(where + ": .npy header: shape " + shape_text + " is not a tuple");
  shape_text = shape_text.substr(1, shape_text.size() - 2);
  std::vector<std::int64_t> shape;
  const auto element = static_cast<std::uint64_t>(at::elementSize(types.at(descr)));
  std::uint64_t data_bytes = element, nonzero = 1;
  const std::uint64_t available = b.size() - start - header_len;
  for (std::size_t p = 0; p < shape_text.size();) {
    const auto q = shape_text.find(',', p);
    std::string part = shape_text.substr(p, q == std::string::npos ? std::string::npos : q - p);
    const auto b0 = part.find_first_not_of(" \t"), b1 = part.find_last_not_of(" \t");
    part = b0 == std::string::npos ? "" : part.substr(b0, b1 - b0 + 1);
    if (!part.empty() && part.back() == 'L') part.pop_back();  // Python 2 longs
    if (part.empty()) {
      if (q != std::string::npos && !shape.empty() && shape_text.find_first_not_of(" \t", q + 1) != std::string::npos)
        throw IoError(where + ": .npy header: shape (" + shape_text + ") has an empty entry");
    } else {
      if (part.size() > 18 || part.find_first_not_of("0123456789") != std::string::npos)
        throw IoError(where + ": .npy header: shape (" + shape_text + ") has the entry '" + part +
                      "', not a non-negative integer");
      const auto d = static_cast<std::uint64_t>(std::stoll(part));
      if (shape.size() >= 16)
        throw IoError(where + ": .npy header: shape (" + shape_text + ") has more than 16 dimensions");
      // Sizes against the bytes present, before multiplying further; the
      // extents other than 0 must also multiply within int64 (strides).
      data_bytes = d == 0 ? 0 : (data_bytes > available / d + 1 ? available + 1 : data_bytes * d);
      if (d != 0 && nonzero > (std::uint64_t(1) << 62) / d)
        throw IoError(where + ": .npy header: shape (" + shape_text + ") has more elements than dinv can index");
      if (d != 0) nonzero *= d;
      shape.push_back(static_cast<std::int64_t>(d));
    }
    if (q == std::string::npos) break;
    p = q + 1;
  }
  if (data_bytes != available)
    throw IoError(where + ": array of shape (" + shape_text + ") " +
                  (data_bytes > available
                       ? "needs more data bytes than the " + std::to_string(available) + " present"
                       : "needs " + std::to_string(data_bytes) + " data bytes, found " + std::to_string(available)));
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
  if (images.size(1) < 1 || images.size(2) < 1)
    throw IoError("'" + npz_path + "' array '" + split + "_images': images of " + std::to_string(images.size(1)) + "x" +
                  std::to_string(images.size(2)) + " pixels");
  if (images.dim() == 3) images = images.unsqueeze(3).expand({-1, -1, -1, 3}).contiguous();  // gray -> RGB
  if (labels.dim() == 2 && labels.size(1) == 1) labels = labels.squeeze(1);
  if (labels.dim() != 1)
    throw IoError("'" + npz_path + "' array '" + split +
                  "_labels': expected [N] or [N, 1] (multi-label is not supported), found " + c10::str(labels.sizes()));
  // Classes: one more than the largest label of any split, so that all splits agree.
  std::int64_t classes = 0;
  for (const char* s : {"train", "val", "test"})
    if (zip.has(std::string(s) + "_labels.npy")) {
      const std::string key = std::string(s) + "_labels";
      const at::Tensor l = load_member(zip, key);
      if (l.numel() == 0) continue;
      if (l.scalar_type() == at::kBool)
        throw IoError("'" + npz_path + "' array '" + key + "': labels must be integers, found bool");
      const auto top = l.max().item<std::int64_t>(), bottom = l.min().item<std::int64_t>();
      // Every label names a class: a huge one would make millions of names.
      if (bottom < 0 || top >= kMaxClasses)
        throw IoError("'" + npz_path + "' array '" + key + "': labels range over " + std::to_string(bottom) + ".." +
                      std::to_string(top) + ", expected 0.." + std::to_string(kMaxClasses - 1));
      classes = std::max(classes, top + 1);
    }
  std::vector<std::string> names;
  for (std::int64_t c = 0; c < classes; ++c) names.push_back(std::to_string(c));
  const std::string fp = "medmnist:" + split + ":n=" + std::to_string(images.size(0)) + ":" +
                         content_hash(zip.bytes().data(), zip.bytes().size());
  const std::string desc = "MedMNIST " + split + " (" + std::to_string(images.size(0)) + " images, " +
                           std::to_string(images.size(1)) + "x" + std::to_string(images.size(2)) + ", " + npz_path +
                           ")";
  return std::make_shared<TensorDataset>(images, labels, names, fp, desc);
}

}  // namespace dinv::data
