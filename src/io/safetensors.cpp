// safetensors reader (validating, memory-mapped) and writer (byte-compatible
// with the reference writer of huggingface/safetensors).
#include "dinv/io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <set>
#include <unordered_map>

#include <ATen/ATen.h>

#include "dinv/core/error.h"
#include "dinv/core/util.h"
#include "dinv/io/files.h"
#include "dinv/io/json.h"

namespace dinv::io {

namespace {

// The reference refuses headers above 100 MB; so do we.
constexpr std::uint64_t kMaxHeaderSize = 100'000'000;

struct DtypeEntry {
  const char* name;
  at::ScalarType type;
  int size;
  int rank;  // the reference writer's ordering (larger first)
};

const DtypeEntry kDtypes[] = {
    {"BOOL", at::kBool, 1, 0},  {"U8", at::kByte, 1, 1},       {"I8", at::kChar, 1, 2}, {"I16", at::kShort, 2, 3},
    {"F16", at::kHalf, 2, 4},   {"BF16", at::kBFloat16, 2, 5}, {"I32", at::kInt, 4, 6}, {"F32", at::kFloat, 4, 7},
    {"F64", at::kDouble, 8, 8}, {"I64", at::kLong, 8, 9},
};

const DtypeEntry* dtype_by_name(const std::string& name) {
  for (const auto& d : kDtypes)
    if (name == d.name) return &d;
  return nullptr;
}

const DtypeEntry& dtype_by_type(at::ScalarType t, const std::string& path, const std::string& tensor) {
  for (const auto& d : kDtypes)
    if (d.type == t) return d;
  throw IoError(path + ": tensor '" + tensor + "': dtype " + std::string(c10::toString(t)) +
                " cannot be stored in safetensors by dinv");
}

std::string sys_error(const std::string& path, const std::string& what) {
  return path + ": " + what + ": " + std::strerror(errno);
}

bool little_endian() {
  const std::uint16_t one = 1;
  unsigned char b;
  std::memcpy(&b, &one, 1);
  return b == 1;
}

}  // namespace

struct SafetensorsFile::Impl {
  std::string path;
  int fd = -1;
  void* map = nullptr;  // whole file (nullptr for an empty mapping)
  std::uint64_t map_size = 0;
  std::uint64_t data_start = 0;  // 8 + header length
  std::vector<TensorInfo> tensors;
  std::unordered_map<std::string, size_t> index;
  std::map<std::string, std::string> metadata;

  ~Impl() {
    if (map) munmap(map, map_size);
    if (fd >= 0) close(fd);
  }
  const unsigned char* data() const { return static_cast<const unsigned char*>(map) + data_start; }
};

namespace {

[[noreturn]] void bad(const std::string& path, const std::string& what) {
  throw IoError(path + ": not a valid safetensors file: " + what);
}

// JSON parse that also refuses duplicate top-level names (nlohmann would keep
// the last one silently).
Json parse_header(const std::string& text, const std::string& path) {
  std::set<std::string> seen;
  std::string duplicate;
  Json::parser_callback_t cb = [&](int d, Json::parse_event_t ev, Json& parsed) {
    if (ev == Json::parse_event_t::key && d == 1) {
      auto name = parsed.get<std::string>();
      if (!seen.insert(name).second && duplicate.empty()) duplicate = name;
    }
    return true;
  };
  try {
    check_json_depth(text, "header");
  } catch (const IoError& e) {
    bad(path, e.what());
  }
  Json j;
  try {
    j = Json::parse(text, cb);
  } catch (const Json::exception& e) {  // parse_error, and out_of_range for numbers such as 2e505
    bad(path, std::string("header is not valid JSON: ") + e.what());
  }
  if (!duplicate.empty()) bad(path, "tensor '" + duplicate + "' appears twice in the header");
  return j;
}

}  // namespace

SafetensorsFile::SafetensorsFile(const std::string& path) : impl_(std::make_shared<Impl>()) {
  if (!little_endian()) throw IoError(path + ": safetensors files are little-endian; this host is not");
  Impl& m = *impl_;
  m.path = path;
  m.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (m.fd < 0) throw IoError(sys_error(path, "cannot open"));
  struct stat st {};
  if (fstat(m.fd, &st) != 0) throw IoError(sys_error(path, "cannot stat"));
  if (!S_ISREG(st.st_mode)) throw IoError(path + ": not a regular file");
  const auto file_size = static_cast<std::uint64_t>(st.st_size);
  if (file_size < 8)
    bad(path, "truncated: " + std::to_string(file_size) + " bytes, less than the 8-byte header length");

  unsigned char lenbuf[8];
  if (::pread(m.fd, lenbuf, 8, 0) != 8) throw IoError(sys_error(path, "cannot read header length"));
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | lenbuf[i];
  if (n > kMaxHeaderSize) bad(path, "header length " + std::to_string(n) + " exceeds the 100 MB limit");
  if (n > file_size - 8)
    bad(path, "header length " + std::to_string(n) + " is larger than the file (" + std::to_string(file_size) +
                  " bytes): truncated or not safetensors");
  if (n < 2) bad(path, "header length " + std::to_string(n) + " is too small for a JSON object");

  std::string text(n, '\0');
  std::uint64_t got = 0;
  while (got < n) {
    ssize_t r = ::pread(m.fd, text.data() + got, n - got, static_cast<off_t>(8 + got));
    if (r < 0) throw IoError(sys_error(path, "cannot read header"));
    if (r == 0) bad(path, "truncated header");
    got += static_cast<std::uint64_t>(r);
  }
  if (text[0] != '{') bad(path, "header does not start with '{'");
  const Json header = parse_header(text, path);
  if (!header.is_object()) bad(path, "header is not a JSON object");

  m.data_start = 8 + n;
  const std::uint64_t data_size = file_size - m.data_start;

  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const Json& e = it.value();
    if (name == "__metadata__") {
      if (!e.is_object()) bad(path, "__metadata__ is not an object of strings");
      for (auto mi = e.begin(); mi != e.end(); ++mi) {
        if (!mi.value().is_string())
          bad(path,
              "__metadata__ key '" + mi.key() + "' is " + JsonObject::type_name(mi.value()) + ", expected a string");
        m.metadata[mi.key()] = mi.value().get<std::string>();
      }
      continue;
    }
    const std::string where = "tensor '" + name + "'";
    if (!e.is_object()) bad(path, where + ": entry is " + JsonObject::type_name(e) + ", expected an object");
    for (const char* key : {"dtype", "shape", "data_offsets"})
      if (!e.contains(key)) bad(path, where + ": missing '" + key + "'");
    if (!e["dtype"].is_string()) bad(path, where + ": 'dtype' is not a string");
    const std::string dname = e["dtype"].get<std::string>();
    const DtypeEntry* dt = dtype_by_name(dname);
    if (!dt)
      bad(path,
          where + ": unsupported dtype '" + dname + "' (dinv reads F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL)");
    TensorInfo info;
    info.name = name;
    info.dtype = dt->type;
    const Json& shape = e["shape"];
    if (!shape.is_array()) bad(path, where + ": 'shape' is not a list");
    std::uint64_t numel = 1;
    bool overflow = false;
    for (const auto& d : shape) {
      if (!d.is_number_unsigned() && !(d.is_number_integer() && d.get<std::int64_t>() >= 0))
        bad(path, where + ": shape " + shape.dump() + " has an entry that is not a non-negative integer");
      const auto v = d.get<std::uint64_t>();
      if (v > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) overflow = true;
      if (v != 0 && numel > std::numeric_limits<std::uint64_t>::max() / v) overflow = true;
      numel *= v;
      info.shape.push_back(static_cast<std::int64_t>(v));
    }
    const Json& off = e["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      bad(path, where + ": 'data_offsets' " + off.dump() + " is not two non-negative integers");
    info.begin = off[0].get<std::uint64_t>();
    info.end = off[1].get<std::uint64_t>();
    if (info.end < info.begin)
      bad(path, where + ": data_offsets [" + std::to_string(info.begin) + ", " + std::to_string(info.end) +
                    "] end before they begin");
    if (info.end > data_size)
      bad(path, where + ": data_offsets [" + std::to_string(info.begin) + ", " + std::to_string(info.end) +
                    "] lie outside the data section (" + std::to_string(data_size) + " bytes)");
    if (overflow || numel > std::numeric_limits<std::uint64_t>::max() / dt->size)
      bad(path, where + ": shape " + shape_str(info.shape) + " is too large");
    const std::uint64_t want = numel * static_cast<std::uint64_t>(dt->size);
    if (want != info.end - info.begin)
      bad(path, where + ": shape " + shape_str(info.shape) + " of " + dname + " needs " + std::to_string(want) +
                    " bytes but data_offsets [" + std::to_string(info.begin) + ", " + std::to_string(info.end) +
                    "] hold " + std::to_string(info.end - info.begin));
    m.tensors.push_back(std::move(info));
  }

  // File order; byte ranges must tile the data section exactly (as the
  // reference requires): no overlap, no gap, nothing after the last tensor.
  std::stable_sort(m.tensors.begin(), m.tensors.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  std::uint64_t pos = 0;
  const TensorInfo* prev = nullptr;
  for (const auto& t : m.tensors) {
    if (t.begin < pos)
      bad(path, "tensors '" + prev->name + "' [" + std::to_string(prev->begin) + ", " + std::to_string(prev->end) +
                    ") and '" + t.name + "' [" + std::to_string(t.begin) + ", " + std::to_string(t.end) + ") overlap");
    if (t.begin > pos)
      bad(path, "gap of " + std::to_string(t.begin - pos) + " bytes before tensor '" + t.name + "' (offset " +
                    std::to_string(pos) + ")");
    pos = t.end;
    prev = &t;
  }
  if (pos != data_size)
    bad(path, "data section holds " + std::to_string(data_size) + " bytes but the tensors cover " +
                  std::to_string(pos) + " (truncated file or trailing bytes)");
  for (size_t i = 0; i < m.tensors.size(); ++i) m.index[m.tensors[i].name] = i;

  // Private writable mapping: tensors can be modified in place without ever
  // touching the file (copy-on-write), and untouched pages cost nothing.
  m.map_size = file_size;
  m.map = mmap(nullptr, file_size, PROT_READ | PROT_WRITE, MAP_PRIVATE, m.fd, 0);
  if (m.map == MAP_FAILED) {
    m.map = nullptr;
    throw IoError(sys_error(path, "cannot memory-map"));
  }
}

SafetensorsFile::~SafetensorsFile() = default;
SafetensorsFile::SafetensorsFile(SafetensorsFile&&) noexcept = default;
SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&&) noexcept = default;

const std::string& SafetensorsFile::path() const { return impl_->path; }
const std::vector<TensorInfo>& SafetensorsFile::tensors() const { return impl_->tensors; }
bool SafetensorsFile::contains(const std::string& name) const { return impl_->index.count(name) != 0; }
const std::map<std::string, std::string>& SafetensorsFile::metadata() const { return impl_->metadata; }

const TensorInfo& SafetensorsFile::info(const std::string& name) const {
  auto it = impl_->index.find(name);
  if (it == impl_->index.end()) throw IoError(impl_->path + ": no tensor named '" + name + "'");
  return impl_->tensors[it->second];
}

at::Tensor SafetensorsFile::tensor(const std::string& name) const {
  const TensorInfo& ti = info(name);
  const auto opts = at::TensorOptions().dtype(ti.dtype).device(at::kCPU);
  if (ti.begin == ti.end) return at::empty(ti.shape, opts);
  auto* ptr = const_cast<unsigned char*>(impl_->data()) + ti.begin;
  const auto elem = static_cast<std::uintptr_t>(c10::elementSize(ti.dtype));
  if (reinterpret_cast<std::uintptr_t>(ptr) % elem != 0) {
    // A misaligned range (possible only in files not written by the reference
    // writer): copy rather than hand out a misaligned tensor.
    auto out = at::empty(ti.shape, opts);
    std::memcpy(out.data_ptr(), ptr, ti.end - ti.begin);
    return out;
  }
  auto keep = impl_;  // the mapping lives as long as any tensor viewing it
  return at::from_blob(
      ptr, ti.shape, [keep](void*) mutable { keep.reset(); }, opts);
}

void SafetensorsFile::read_into(const std::string& name, at::Tensor& dst) const {
  const TensorInfo& ti = info(name);
  if (dst.scalar_type() != ti.dtype || dst.sizes() != at::IntArrayRef(ti.shape))
    throw IoError(impl_->path + ": tensor '" + name + "': file holds " + std::string(c10::toString(ti.dtype)) + " " +
                  shape_str(ti.shape) + ", destination is " + std::string(c10::toString(dst.scalar_type())) + " " +
                  shape_str(dst.sizes().vec()));
  const std::uint64_t bytes = ti.end - ti.begin;
  if (bytes == 0) return;
  if (dst.device().is_cpu() && dst.is_contiguous()) {
    // Straight from the file into the destination: the page cache is the only
    // other copy, and it is not ours.
    auto* out = static_cast<char*>(dst.data_ptr());
    std::uint64_t done = 0;
    while (done < bytes) {
      ssize_t r = ::pread(impl_->fd, out + done, std::min<std::uint64_t>(bytes - done, 1u << 30),
                          static_cast<off_t>(impl_->data_start + ti.begin + done));
      if (r < 0) {
        if (errno == EINTR) continue;
        throw IoError(sys_error(impl_->path, "cannot read tensor '" + name + "'"));
      }
      if (r == 0) throw IoError(impl_->path + ": file shrank while reading tensor '" + name + "'");
      done += static_cast<std::uint64_t>(r);
    }
    return;
  }
  dst.copy_(tensor(name));
  // Drop the pages this copy touched from our resident set.
  const auto page = static_cast<std::uint64_t>(sysconf(_SC_PAGESIZE));
  const std::uint64_t a = (impl_->data_start + ti.begin) / page * page;
  const std::uint64_t b = impl_->data_start + ti.end;
  madvise(static_cast<char*>(impl_->map) + a, b - a, MADV_DONTNEED);
}

std::map<std::string, at::Tensor> read_safetensors(const std::string& path) {
  SafetensorsFile f(path);
  std::map<std::string, at::Tensor> out;
  for (const auto& t : f.tensors()) out.emplace(t.name, f.tensor(t.name));
  return out;
}

void write_safetensors(const std::string& path, const std::map<std::string, at::Tensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  if (!little_endian()) throw IoError(path + ": safetensors files are little-endian; this host is not");
  struct Item {
    std::string name;
    const DtypeEntry* dt;
    at::Tensor data;  // contiguous CPU
  };
  std::vector<Item> items;
  for (const auto& [name, t] : tensors) {
    if (name == "__metadata__") throw IoError(path + ": '__metadata__' cannot be a tensor name");
    if (!t.defined()) throw IoError(path + ": tensor '" + name + "' is undefined");
    const DtypeEntry& dt = dtype_by_type(t.scalar_type(), path, name);
    items.push_back({name, &dt, t.detach().to(at::kCPU).contiguous()});
  }
  // The reference writer's order: larger dtypes first (keeps every tensor
  // aligned), then by name.
  std::stable_sort(items.begin(), items.end(), [](const Item& a, const Item& b) {
    return a.dt->rank != b.dt->rank ? a.dt->rank > b.dt->rank : a.name < b.name;
  });

  // Compact JSON in the reference's key order: __metadata__ first, then the
  // tensors in data order, each as dtype, shape, data_offsets.
  std::string header = "{";
  bool first = true;
  if (!metadata.empty()) {
    Json md = Json::object();
    for (const auto& [k, v] : metadata) md[k] = v;
    header += "\"__metadata__\":" + md.dump();
    first = false;
  }
  std::uint64_t offset = 0;
  for (const auto& it : items) {
    const std::uint64_t bytes = static_cast<std::uint64_t>(it.data.numel()) * it.dt->size;
    if (!first) header += ",";
    first = false;
    header += Json(it.name).dump() + ":{\"dtype\":\"" + it.dt->name +
              "\",\"shape\":" + Json(it.data.sizes().vec()).dump() + ",\"data_offsets\":[" + std::to_string(offset) +
              "," + std::to_string(offset + bytes) + "]}";
    offset += bytes;
  }
  header += "}";
  // Pad with spaces so that the data section starts 8-byte aligned.
  header.append((8 - header.size() % 8) % 8, ' ');

  // Write to a temporary file next to the target, then rename: a crash never
  // leaves a half-written file under the real name.
  const std::string tmp = path + ".tmp" + std::to_string(::getpid());
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) throw IoError(sys_error(tmp, "cannot open for writing"));
  auto fail = [&](const std::string& what) {
    const std::string msg = sys_error(path, what);
    std::fclose(f);
    std::remove(tmp.c_str());
    throw IoError(msg);
  };
  unsigned char lenbuf[8];
  std::uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) lenbuf[i] = static_cast<unsigned char>((n >> (8 * i)) & 0xff);
  if (std::fwrite(lenbuf, 1, 8, f) != 8 || std::fwrite(header.data(), 1, n, f) != n) fail("write error");
  for (const auto& it : items) {
    const size_t bytes = static_cast<size_t>(it.data.numel()) * it.dt->size;
    if (bytes && std::fwrite(it.data.data_ptr(), 1, bytes, f) != bytes) fail("write error");
  }
  if (std::fflush(f) != 0) fail("write error");
  if (std::fclose(f) != 0) {
    std::remove(tmp.c_str());
    throw IoError(sys_error(path, "write error"));
  }
  try {
    replace_file(tmp, path);
  } catch (const IoError&) {
    std::remove(tmp.c_str());
    throw;
  }
}

}  // namespace dinv::io
