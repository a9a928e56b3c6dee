// WebDataset shards: POSIX tar files whose members are grouped into samples by
// key (the member's path up to the first dot of its file name). Each sample
// has one image (.png, .jpg or .jpeg) and optionally a class index (.cls,
// decimal text). The shards are read once, front to back, header by header
// (the member data is skipped, not read), to index where each sample's bytes
// lie; `get` then reads just those bytes, through one open handle that stays
// on its shard: reading a range of samples in order (a rank's share of a
// retrieval pool) streams each shard front to back.
#include <ATen/ATen.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>

#include "dinv/core/error.h"
#include "dinv/data/codec.h"
#include "dinv/data/readers.h"

namespace fs = std::filesystem;

namespace dinv::data {
namespace {

constexpr std::int64_t kBlock = 512;

struct Member {
  std::size_t shard = 0;
  std::int64_t offset = 0, size = 0;
  std::string name, ext;
};

struct Sample {
  Member image;
  std::int64_t label = 0;
};

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

// A NUL-terminated (or full-width) header field.
std::string field(const char* p, std::size_t width) { return std::string(p, strnlen(p, width)); }

std::int64_t octal(const char* p, std::size_t width, const std::string& where) {
  std::int64_t v = 0;
  std::size_t i = 0;
  while (i < width && (p[i] == ' ' || p[i] == '\0')) ++i;
  for (; i < width && p[i] >= '0' && p[i] <= '7'; ++i) {
    v = v * 8 + (p[i] - '0');
    if (v > (std::int64_t(1) << 40)) throw IoError(where + ": member size field out of range");
  }
  if (i < width && p[i] != ' ' && p[i] != '\0') throw IoError(where + ": size field is not octal");
  return v;
}

// `size` bytes at `offset` of the open shard `in` (named `path` in errors).
std::vector<char> read_from(std::ifstream& in, const std::string& path, std::int64_t offset, std::int64_t size) {
  std::vector<char> out(static_cast<std::size_t>(size));
  if (in.tellg() != std::streampos(offset)) in.seekg(offset);
  if (!in || !in.read(out.data(), size))
    throw IoError(path + ": cannot read " + std::to_string(size) + " bytes at offset " + std::to_string(offset));
  return out;
}

// The shard last read, kept open: consecutive reads of one shard continue the
// same stream (no reopen, no seek when the next member follows). Reads are
// serialised; decoding happens outside.
class OpenShard {
 public:
  std::vector<char> read(const std::string& path, std::size_t shard, std::int64_t offset, std::int64_t size) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!in_.is_open() || shard != shard_) {
      in_ = std::ifstream(path, std::ios::binary);
      shard_ = shard;
    }
    try {
      return read_from(in_, path, offset, size);
    } catch (const IoError&) {
      in_ = std::ifstream();  // the next read starts afresh
      throw;
    }
  }

 private:
  std::mutex mutex_;
  std::ifstream in_;
  std::size_t shard_ = 0;
};

// Every regular file of the tar open as `in`, in order: (name, offset of data, size).
std::vector<Member> scan_tar(std::ifstream& in, const std::string& path, std::size_t shard) {
  const auto file_size = static_cast<std::int64_t>(fs::file_size(path));
  std::vector<Member> out;
  std::string long_name;  // GNU 'L' entries carry the next member's name
  std::int64_t pos = 0;
  char h[kBlock];
  bool ended = false;
  while (pos + kBlock <= file_size) {
    in.seekg(pos);
    if (!in.read(h, kBlock)) throw IoError(path + ": cannot read the tar header at byte " + std::to_string(pos));
    if (std::all_of(h, h + kBlock, [](char c) { return c == 0; })) {  // end-of-archive block
      ended = true;
      break;
    }
    const std::string where = path + ": tar member at byte " + std::to_string(pos);
    if (std::memcmp(h + 257, "ustar", 5) != 0) throw IoError(where + ": not a POSIX (ustar) tar header");
    const std::int64_t size = octal(h + 124, 12, where);
    const char type = h[156];
    const std::int64_t data = pos + kBlock;
    if (data + size > file_size)
      throw IoError(where + ": member of " + std::to_string(size) + " bytes runs past the end of the file (" +
                    std::to_string(file_size) + " bytes; truncated shard?)");
    if (type == 'L') {
      const auto bytes = read_from(in, path, data, size);
      long_name = field(bytes.data(), bytes.size());
    } else if (type == '0' || type == '\0') {
      std::string name = field(h, 100);
      const std::string prefix = field(h + 345, 155);
      if (!prefix.empty()) name = prefix + "/" + name;
      if (!long_name.empty()) name = long_name;
      out.push_back({shard, data, size, name, ""});
      long_name.clear();
    } else if (type != 'x' && type != 'g') {
      long_name.clear();  // directories, links: not sample members
    }
    pos = data + (size + kBlock - 1) / kBlock * kBlock;
  }
  // tar writers end an archive with zero blocks: without them it was cut short.
  if (!ended)
    throw IoError(path + ": no end-of-archive block after byte " + std::to_string(pos) + " of " +
                  std::to_string(file_size) + " (truncated shard?)");
  return out;
}

class WebDataset : public Dataset {
 public:
  explicit WebDataset(const std::string& root) {
    if (fs::is_directory(root)) {
      for (const auto& e : fs::directory_iterator(root))
        if (e.is_regular_file() && lower(e.path().extension().string()) == ".tar") shards_.push_back(e.path().string());
      std::sort(shards_.begin(), shards_.end());
    } else {
      shards_.push_back(root);
    }
    if (shards_.empty()) throw IoError("webdataset: '" + root + "' has no .tar shards");
    std::string hash;
    std::int64_t max_label = -1;
    for (std::size_t s = 0; s < shards_.size(); ++s) {
      // Shard names and sizes, not where they live (a moved copy is the same pool).
      const std::string key =
          fs::path(shards_[s]).filename().string() + ":" + std::to_string(fs::file_size(shards_[s]));
      hash = content_hash(key.data(), key.size(), hash);
      index_shard(s, &max_label);
    }
    if (samples_.empty()) throw IoError("webdataset: '" + root + "' has no samples with a .png/.jpg/.jpeg image");
    for (std::int64_t c = 0; c <= std::max<std::int64_t>(max_label, 0); ++c) names_.push_back(std::to_string(c));
    fingerprint_ = "webdataset:n=" + std::to_string(samples_.size()) + ":" + hash;
    description_ = "WebDataset " + root + " (" + std::to_string(shards_.size()) + " shards, " +
                   std::to_string(samples_.size()) + " images)";
  }

  std::int64_t size() const override { return static_cast<std::int64_t>(samples_.size()); }
  Example get(std::int64_t index) const override {
    const Sample& s = samples_.at(static_cast<std::size_t>(index));
    const std::string& shard = shards_[s.image.shard];
    const auto raw = open_.read(shard, s.image.shard, s.image.offset, s.image.size);
    const std::vector<std::uint8_t> bytes(raw.begin(), raw.end());
    const std::string name = shard + ":" + s.image.name;
    at::Tensor image = s.image.ext == "png" ? decode_png(bytes, name) : decode_jpeg(bytes, name);
    return {image, s.label};
  }
  const std::vector<std::string>& class_names() const override { return names_; }
  std::string fingerprint() const override { return fingerprint_; }
  std::string describe() const override { return description_; }

 private:
  // Members with the same key form one sample (WebDataset writes them together).
  void index_shard(std::size_t s, std::int64_t* max_label) {
    std::ifstream in(shards_[s], std::ios::binary);
    if (!in) throw IoError("webdataset: cannot open shard '" + shards_[s] + "'");
    std::map<std::string, Sample> pending;
    std::vector<std::string> order;
    for (Member m : scan_tar(in, shards_[s], s)) {
      const auto slash = m.name.find_last_of('/');
      const auto dot = m.name.find('.', slash == std::string::npos ? 0 : slash + 1);
      if (dot == std::string::npos) continue;
      const std::string key = m.name.substr(0, dot);
      m.ext = lower(m.name.substr(dot + 1));
      if (!pending.count(key)) order.push_back(key);
      Sample& sample = pending[key];
      if (m.ext == "png" || m.ext == "jpg" || m.ext == "jpeg") {
        sample.image = m;
      } else if (m.ext == "cls") {
        const auto text = read_from(in, shards_[s], m.offset, m.size);
        try {
          sample.label = std::stoll(std::string(text.begin(), text.end()));
        } catch (const std::exception&) {
          throw IoError(shards_[s] + ":" + m.name + ": expected a class index (decimal text), found '" +
                        std::string(text.begin(), text.begin() + std::min<std::size_t>(text.size(), 20)) + "'");
        }
        if (sample.label < 0 || sample.label > 1'000'000)
          throw IoError(shards_[s] + ":" + m.name + ": class index " + std::to_string(sample.label) +
                        " outside 0..1000000");
        *max_label = std::max(*max_label, sample.label);
      }
    }
    for (const auto& key : order)
      if (!pending[key].image.name.empty()) samples_.push_back(pending[key]);
  }

  std::vector<std::string> shards_, names_;
  std::vector<Sample> samples_;
  std::string fingerprint_, description_;
  mutable OpenShard open_;
};

}  // namespace

DatasetPtr open_webdataset(const std::string& root) { return std::make_shared<WebDataset>(root); }

}  // namespace dinv::data
