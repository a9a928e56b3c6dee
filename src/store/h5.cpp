#include "dinv/store/h5.h"

#include <atomic>
#include <cerrno>
#include <cstring>
#include <exception>
#include <limits>

#include <ATen/ATen.h>

#include "dinv/core/error.h"

namespace dinv::h5 {
namespace {

// The most one read_rows call allocates (a dataset's extents come from the
// file, so a damaged file could ask for anything).
constexpr std::uint64_t kMaxReadBytes = std::uint64_t(1) << 40;

herr_t walk_error(unsigned n, const H5E_error2_t* err, void* data) {
  auto& out = *static_cast<std::string*>(data);
  char major[128] = "", minor[128] = "";
  H5Eget_msg(err->maj_num, nullptr, major, sizeof major);
  H5Eget_msg(err->min_num, nullptr, minor, sizeof minor);
  out += "\n    #" + std::to_string(n) + " " + (err->func_name ? err->func_name : "?") + ": " +
         (err->desc ? err->desc : "") + " (" + major + ": " + minor + ")";
  return 0;
}

hid_t file_type(at::ScalarType t, const std::string& name) {
  switch (t) {
    case at::kFloat:
      return H5T_IEEE_F32LE;
    case at::kDouble:
      return H5T_IEEE_F64LE;
    case at::kByte:
      return H5T_STD_U8LE;
    case at::kInt:
      return H5T_STD_I32LE;
    case at::kLong:
      return H5T_STD_I64LE;
    default:
      throw StoreError(name + ": unsupported dtype " + std::string(c10::toString(t)));
  }
}

hid_t memory_type(at::ScalarType t, const std::string& name) {
  switch (t) {
    case at::kFloat:
      return H5T_NATIVE_FLOAT;
    case at::kDouble:
      return H5T_NATIVE_DOUBLE;
    case at::kByte:
      return H5T_NATIVE_UINT8;
    case at::kInt:
      return H5T_NATIVE_INT32;
    case at::kLong:
      return H5T_NATIVE_INT64;
    default:
      throw StoreError(name + ": unsupported dtype " + std::string(c10::toString(t)));
  }
}

// The file an object lives in, for messages ("" when unknown).
std::string file_of(hid_t obj) {
  const ssize_t n = H5Fget_name(obj, nullptr, 0);
  if (n <= 0) return "";
  std::string name(static_cast<std::size_t>(n) + 1, '\0');
  H5Fget_name(obj, name.data(), name.size());
  name.resize(static_cast<std::size_t>(n));
  return name;
}

Handle plist(hid_t cls, const std::string& what) { return {check(H5Pcreate(cls), what), H5Pclose}; }

// The file access of every parallel file: MPI-IO over `comm`, collective
// metadata writes, and strong closing: closing the file closes what is still
// open in it (handles held elsewhere become invalid), so that a store closes
// cleanly before a rename or exit.
Handle parallel_access(MPI_Comm comm) {
  Handle fapl = plist(H5P_FILE_ACCESS, "file access property list");
  check(H5Pset_fapl_mpio(fapl.id(), comm, MPI_INFO_NULL), "H5Pset_fapl_mpio");
  check(H5Pset_coll_metadata_write(fapl.id(), 1), "H5Pset_coll_metadata_write");
  check(H5Pset_fclose_degree(fapl.id(), H5F_CLOSE_STRONG), "H5Pset_fclose_degree");
  return fapl;
}

// Object creation properties that keep files byte-reproducible.
void no_times(const Handle& ocpl) { check(H5Pset_obj_track_times(ocpl.id(), 0), "H5Pset_obj_track_times"); }

Handle link_creation_plist() {
  Handle lcpl = plist(H5P_LINK_CREATE, "link creation property list");
  check(H5Pset_create_intermediate_group(lcpl.id(), 1), "H5Pset_create_intermediate_group");
  return lcpl;
}

Handle gcpl() {
  Handle p = plist(H5P_GROUP_CREATE, "group creation property list");
  no_times(p);
  return p;
}

Handle open_attribute(const Handle& obj, const std::string& name, const std::string& where) {
  if (!has_attribute(obj, name)) throw StoreError(where + ": attribute '" + name + "' is missing");
  return {check(H5Aopen(obj.id(), name.c_str(), H5P_DEFAULT), where + ": open attribute '" + name + "'"), H5Aclose};
}

// Replace attribute `name` of `obj` with a new one of `type` and `space`.
Handle fresh_attribute(const Handle& obj, const std::string& name, hid_t type, hid_t space) {
  if (has_attribute(obj, name)) check(H5Adelete(obj.id(), name.c_str()), "delete attribute '" + name + "'");
  return {check(H5Acreate2(obj.id(), name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT),
                "create attribute '" + name + "'"),
          H5Aclose};
}

Handle vl_string_type() {
  Handle t{check(H5Tcopy(H5T_C_S1), "H5Tcopy"), H5Tclose};
  check(H5Tset_size(t.id(), H5T_VARIABLE), "H5Tset_size");
  check(H5Tset_cset(t.id(), H5T_CSET_UTF8), "H5Tset_cset");
  return t;
}

Handle scalar_space() { return {check(H5Screate(H5S_SCALAR), "H5Screate"), H5Sclose}; }

Handle simple_space(const std::vector<hsize_t>& dims) {
  return {check(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), "H5Screate_simple"), H5Sclose};
}

}  // namespace

// ------------------------------------------------------------------ basics

void Handle::reset() {
  // Closing a file is collective under MPI-IO. While an exception unwinds on
  // one rank the others may be waiting in another collective: closing here
  // would deadlock the job instead of letting main report and abort it.
  const bool collective_close = closer_ == &H5Fclose;
  if (id_ >= 0 && closer_ && !(collective_close && std::uncaught_exceptions() > 0)) closer_(id_);
  id_ = H5I_INVALID_HID;
}

void Handle::close(const std::string& what) {
  if (id_ < 0) return;
  const hid_t id = id_;
  id_ = H5I_INVALID_HID;
  check(closer_(id), what);
}

std::string error_stack() {
  std::string out;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, walk_error, &out);
  H5Eclear2(H5E_DEFAULT);
  return out.empty() ? "" : "\n  HDF5 error stack:" + out;
}

hid_t check(hid_t rc, const std::string& what) {
  if (rc < 0) throw StoreError(what + " failed" + error_stack());
  return rc;
}

namespace {

std::atomic<bool> a_write_failed{false};

// check() for calls that write to the file: remembers the failure and adds
// what the system said (errno survives HDF5 and MPI-IO for these codes).
template <typename Call>
hid_t check_write(Call call, const std::string& what) {
  errno = 0;
  const hid_t rc = call();
  if (rc >= 0) return rc;
  const int err = errno;
  a_write_failed = true;
  const bool known = err == ENOSPC || err == EDQUOT || err == EFBIG || err == EIO || err == EROFS;
  throw StoreError(what + " failed" + (known ? std::string(": ") + std::strerror(err) : std::string()) + error_stack());
}

}  // namespace

bool write_failed() { return a_write_failed; }

void quiet_errors() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }

std::string library_version() {
  unsigned major = 0, minor = 0, release = 0;
  H5get_libversion(&major, &minor, &release);
  std::string v = std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(release);
#ifdef H5_HAVE_PARALLEL
  v += " (parallel)";
#endif
  return v;
}

// ------------------------------------------------------------------- files

namespace {

// A file open on one process closes without a collective, so it may close
// while an exception unwinds (Handle::reset leaves only collective closes to
// the abort). A function of its own: the closer's address tells them apart.
herr_t close_local_file(hid_t id) { return H5Fclose(id); }

Handle::Closer file_closer(MPI_Comm comm) {
  int ranks = 0;
  MPI_Comm_size(comm, &ranks);
  return ranks == 1 ? &close_local_file : &H5Fclose;
}

}  // namespace

Handle create_file(const std::string& path, MPI_Comm comm) {
  quiet_errors();
  const Handle fapl = parallel_access(comm);
  Handle fcpl = plist(H5P_FILE_CREATE, "file creation property list");
  no_times(fcpl);
  return {check(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, fcpl.id(), fapl.id()), "create HDF5 file '" + path + "'"),
          file_closer(comm)};
}

Handle open_file(const std::string& path, MPI_Comm comm, bool writable) {
  quiet_errors();
  const Handle fapl = parallel_access(comm);
  return {check(H5Fopen(path.c_str(), writable ? H5F_ACC_RDWR : H5F_ACC_RDONLY, fapl.id()),
                "open HDF5 file '" + path + "'"),
          file_closer(comm)};
}

Handle open_file_serial(const std::string& path) {
  quiet_errors();
  return {check(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), "open HDF5 file '" + path + "'"),
          &close_local_file};
}

void flush(const Handle& file, const std::string& path) {
  check_write([&] { return H5Fflush(file.id(), H5F_SCOPE_GLOBAL); }, "flush '" + path + "'");
}

// ---------------------------------------------------------- groups, datasets

bool exists(const Handle& loc, const std::string& path) {
  // Walk the path one link at a time: H5Lexists fails on a missing parent.
  std::string prefix;
  std::size_t pos = 0;
  while (pos <= path.size()) {
    const auto next = path.find('/', pos);
    const auto part = path.substr(pos, next == std::string::npos ? std::string::npos : next - pos);
    if (!part.empty()) {
      prefix += (prefix.empty() && path[0] != '/' ? "" : "/") + part;
      if (check(H5Lexists(loc.id(), prefix.c_str(), H5P_DEFAULT), "look up '" + prefix + "'") <= 0) return false;
    }
    if (next == std::string::npos) break;
    pos = next + 1;
  }
  return true;
}

void move(const Handle& loc, const std::string& from, const std::string& to) {
  Handle lcpl = link_creation_plist();
  check(H5Lmove(loc.id(), from.c_str(), loc.id(), to.c_str(), lcpl.id(), H5P_DEFAULT),
        "move '" + from + "' to '" + to + "' in '" + file_of(loc.id()) + "'");
}

void remove(const Handle& loc, const std::string& path) {
  check(H5Ldelete(loc.id(), path.c_str(), H5P_DEFAULT), "remove '" + path + "' from '" + file_of(loc.id()) + "'");
}

Handle create_group(const Handle& loc, const std::string& path) {
  Handle lcpl = link_creation_plist();
  Handle cpl = gcpl();
  return {check(H5Gcreate2(loc.id(), path.c_str(), lcpl.id(), cpl.id(), H5P_DEFAULT), "create group '" + path + "'"),
          H5Gclose};
}

Handle open_group(const Handle& loc, const std::string& path) {
  if (!exists(loc, path)) throw StoreError("group '" + path + "' does not exist");
  return {check(H5Gopen2(loc.id(), path.c_str(), H5P_DEFAULT), "open group '" + path + "'"), H5Gclose};
}

Handle create_dataset(const Handle& loc, const std::string& path, at::ScalarType dtype,
                      const std::vector<std::int64_t>& dims) {
  std::vector<hsize_t> hdims(dims.begin(), dims.end());
  Handle space = simple_space(hdims);
  Handle dcpl = plist(H5P_DATASET_CREATE, "dataset creation property list");
  no_times(dcpl);
  check(H5Pset_layout(dcpl.id(), H5D_CONTIGUOUS), "H5Pset_layout");
  check(H5Pset_alloc_time(dcpl.id(), H5D_ALLOC_TIME_EARLY), "H5Pset_alloc_time");
  check(H5Pset_fill_time(dcpl.id(), H5D_FILL_TIME_ALLOC), "H5Pset_fill_time");
  Handle lcpl = link_creation_plist();
  // Early allocation writes the fill values: this is where a full disk shows first.
  return {check_write(
              [&] {
                return H5Dcreate2(loc.id(), path.c_str(), file_type(dtype, path), space.id(), lcpl.id(), dcpl.id(),
                                  H5P_DEFAULT);
              },
              "create dataset '" + path + "' in '" + file_of(loc.id()) + "'"),
          H5Dclose};
}

Handle open_dataset(const Handle& loc, const std::string& path) {
  if (!exists(loc, path)) throw StoreError("dataset '" + path + "' does not exist");
  return {check(H5Dopen2(loc.id(), path.c_str(), H5P_DEFAULT), "open dataset '" + path + "'"), H5Dclose};
}

std::vector<std::int64_t> dataset_dims(const Handle& dataset) {
  Handle space{check(H5Dget_space(dataset.id()), "H5Dget_space"), H5Sclose};
  const int rank = check(H5Sget_simple_extent_ndims(space.id()), "H5Sget_simple_extent_ndims");
  std::vector<hsize_t> dims(rank);
  H5Sget_simple_extent_dims(space.id(), dims.data(), nullptr);
  for (auto d : dims)
    if (d > static_cast<hsize_t>(std::numeric_limits<std::int64_t>::max()))
      throw StoreError("'" + file_of(dataset.id()) + "': a dataset has an extent of " + std::to_string(d) +
                       " (more than int64 holds)");
  return {dims.begin(), dims.end()};
}

at::ScalarType dataset_dtype(const Handle& dataset, const std::string& name) {
  Handle type{check(H5Dget_type(dataset.id()), "H5Dget_type"), H5Tclose};
  for (auto t : {at::kFloat, at::kDouble, at::kByte, at::kInt, at::kLong})
    if (H5Tequal(type.id(), file_type(t, name)) > 0) return t;
  throw StoreError(name + ": dataset has a type dinv does not read");
}

namespace {
// File-space selection of rows [begin, begin+n) of a dataset.
Handle row_selection(const Handle& dataset, std::int64_t begin, std::int64_t n, const std::string& name,
                     std::vector<hsize_t>* counts) {
  Handle space{check(H5Dget_space(dataset.id()), "H5Dget_space"), H5Sclose};
  const auto dims = dataset_dims(dataset);
  if (dims.empty())
    throw StoreError(name + " in '" + file_of(dataset.id()) + "' is a scalar dataset, expected an array of rows");
  if (begin < 0 || n < 0 || begin > dims[0] || n > dims[0] - begin)
    throw StoreError(name + ": rows [" + std::to_string(begin) + ", " + std::to_string(begin + n) +
                     ") are outside the dataset's " + std::to_string(dims[0]) + " rows");
  std::vector<hsize_t> start(dims.size(), 0), count(dims.begin(), dims.end());
  start[0] = static_cast<hsize_t>(begin);
  count[0] = static_cast<hsize_t>(n);
  if (n == 0)
    check(H5Sselect_none(space.id()), "H5Sselect_none");
  else
    check(H5Sselect_hyperslab(space.id(), H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr),
          "select rows of " + name);
  *counts = count;
  return space;
}
}  // namespace

void write_rows(const Handle& dataset, const std::string& name, std::int64_t row_begin, const at::Tensor& rows,
                bool collective) {
  const auto dims = dataset_dims(dataset);
  const std::int64_t n = rows.defined() && rows.numel() > 0 ? rows.size(0) : 0;
  if (n > 0) {
    auto expected = dims;
    expected[0] = n;
    if (rows.sizes().vec() != expected)
      throw StoreError(name + ": rows of shape " + c10::str(rows.sizes()) + " do not fit the dataset's rows " +
                       c10::str(c10::IntArrayRef(dims).slice(1)));
    if (rows.scalar_type() != dataset_dtype(dataset, name))
      throw StoreError(name + ": writing " + std::string(c10::toString(rows.scalar_type())) + " into a dataset of " +
                       c10::toString(dataset_dtype(dataset, name)));
  }
  std::vector<hsize_t> count;
  Handle file_space = row_selection(dataset, row_begin, n, name, &count);
  Handle mem_space = simple_space(n > 0 ? count : std::vector<hsize_t>{1});
  if (n == 0) check(H5Sselect_none(mem_space.id()), "H5Sselect_none");
  Handle dxpl = plist(H5P_DATASET_XFER, "transfer property list");
  check(H5Pset_dxpl_mpio(dxpl.id(), collective ? H5FD_MPIO_COLLECTIVE : H5FD_MPIO_INDEPENDENT), "H5Pset_dxpl_mpio");
  const at::Tensor data = n > 0 ? rows.cpu().contiguous() : at::empty({1}, at::kByte);
  const hid_t mtype = memory_type(n > 0 ? data.scalar_type() : dataset_dtype(dataset, name), name);
  check_write(
      [&] { return H5Dwrite(dataset.id(), mtype, mem_space.id(), file_space.id(), dxpl.id(), data.data_ptr()); },
      "write rows [" + std::to_string(row_begin) + ", " + std::to_string(row_begin + n) + ") of " + name + " in '" +
          file_of(dataset.id()) + "'");
}

at::Tensor read_rows(const Handle& dataset, const std::string& name, std::int64_t begin, std::int64_t end) {
  std::vector<hsize_t> count;
  Handle file_space = row_selection(dataset, begin, end - begin, name, &count);
  const auto dtype = dataset_dtype(dataset, name);
  std::vector<std::int64_t> shape(count.begin(), count.end());
  // The extents come from the file: check the size before allocating.
  std::uint64_t bytes = at::elementSize(dtype);
  for (auto d : shape) {
    if (d != 0 && bytes > kMaxReadBytes / static_cast<std::uint64_t>(d))
      throw StoreError(name + " in '" + file_of(dataset.id()) + "': reading rows [" + std::to_string(begin) + ", " +
                       std::to_string(end) + ") of shape " + c10::str(c10::IntArrayRef(shape)) +
                       " would need more than " + std::to_string(kMaxReadBytes) + " bytes");
    bytes *= static_cast<std::uint64_t>(d);
  }
  at::Tensor out;
  try {
    out = at::empty(shape, at::TensorOptions().dtype(dtype));
  } catch (const std::exception&) {
    throw StoreError(name + " in '" + file_of(dataset.id()) + "': cannot allocate " + std::to_string(bytes) +
                     " bytes for rows [" + std::to_string(begin) + ", " + std::to_string(end) + ")");
  }
  if (end == begin) return out;
  Handle mem_space = simple_space(count);
  check(H5Dread(dataset.id(), memory_type(dtype, name), mem_space.id(), file_space.id(), H5P_DEFAULT, out.data_ptr()),
        "read rows [" + std::to_string(begin) + ", " + std::to_string(end) + ") of " + name);
  return out;
}

at::Tensor read_all(const Handle& dataset, const std::string& name) {
  const auto dims = dataset_dims(dataset);
  if (dims.empty())
    throw StoreError(name + " in '" + file_of(dataset.id()) + "' is a scalar dataset, expected an array of rows");
  return read_rows(dataset, name, 0, dims[0]);
}

void require_layout(const Handle& dataset, const std::string& name, at::ScalarType dtype,
                    const std::vector<std::int64_t>& dims) {
  const auto found = dataset_dims(dataset);
  std::string found_type;
  bool type_ok = false;
  try {
    const auto t = dataset_dtype(dataset, name);
    found_type = c10::toString(t);
    type_ok = t == dtype;
  } catch (const StoreError&) {
    found_type = "a type dinv does not read";
  }
  bool shape_ok = found.size() == dims.size();
  for (std::size_t i = 0; shape_ok && i < dims.size(); ++i) shape_ok = dims[i] < 0 || dims[i] == found[i];
  if (type_ok && shape_ok) return;
  std::string want = "[";
  for (std::size_t i = 0; i < dims.size(); ++i)
    want += (i ? ", " : "") + (dims[i] < 0 ? std::string("*") : std::to_string(dims[i]));
  want += "]";
  throw StoreError("'" + file_of(dataset.id()) + "': dataset '" + name + "' is " + found_type + " " +
                   c10::str(c10::IntArrayRef(found)) + ", expected " + c10::toString(dtype) + " " + want);
}

// -------------------------------------------------------------- attributes

bool has_attribute(const Handle& obj, const std::string& name) {
  return check(H5Aexists(obj.id(), name.c_str()), "look up attribute '" + name + "'") > 0;
}

void set_attribute(const Handle& obj, const std::string& name, const std::string& value) {
  Handle type = vl_string_type();
  Handle space = scalar_space();
  Handle attr = fresh_attribute(obj, name, type.id(), space.id());
  const char* p = value.c_str();
  check(H5Awrite(attr.id(), type.id(), &p), "write attribute '" + name + "'");
}

void set_attribute(const Handle& obj, const std::string& name, std::int64_t value) {
  Handle space = scalar_space();
  Handle attr = fresh_attribute(obj, name, H5T_STD_I64LE, space.id());
  check(H5Awrite(attr.id(), H5T_NATIVE_INT64, &value), "write attribute '" + name + "'");
}

void set_attribute(const Handle& obj, const std::string& name, double value) {
  Handle space = scalar_space();
  Handle attr = fresh_attribute(obj, name, H5T_IEEE_F64LE, space.id());
  check(H5Awrite(attr.id(), H5T_NATIVE_DOUBLE, &value), "write attribute '" + name + "'");
}

void set_attribute(const Handle& obj, const std::string& name, const std::vector<std::string>& values) {
  Handle type = vl_string_type();
  Handle space = simple_space({static_cast<hsize_t>(values.size())});
  Handle attr = fresh_attribute(obj, name, type.id(), space.id());
  std::vector<const char*> ptrs;
  for (const auto& v : values) ptrs.push_back(v.c_str());
  if (!values.empty()) check(H5Awrite(attr.id(), type.id(), ptrs.data()), "write attribute '" + name + "'");
}

std::string string_attribute(const Handle& obj, const std::string& name, const std::string& where) {
  auto v = strings_attribute(obj, name, where);
  if (v.size() != 1) throw StoreError(where + ": attribute '" + name + "' is not a single string");
  return v[0];
}

std::vector<std::string> strings_attribute(const Handle& obj, const std::string& name, const std::string& where) {
  Handle attr = open_attribute(obj, name, where);
  Handle ftype{check(H5Aget_type(attr.id()), "H5Aget_type"), H5Tclose};
  if (H5Tget_class(ftype.id()) != H5T_STRING) throw StoreError(where + ": attribute '" + name + "' is not a string");
  Handle space{check(H5Aget_space(attr.id()), "H5Aget_space"), H5Sclose};
  const auto n = static_cast<std::size_t>(H5Sget_simple_extent_npoints(space.id()));
  std::vector<std::string> out;
  if (H5Tis_variable_str(ftype.id()) > 0) {
    Handle type = vl_string_type();
    std::vector<char*> ptrs(n, nullptr);
    check(H5Aread(attr.id(), type.id(), ptrs.data()), where + ": read attribute '" + name + "'");
    for (auto* p : ptrs) out.emplace_back(p ? p : "");
    H5Dvlen_reclaim(type.id(), space.id(), H5P_DEFAULT, ptrs.data());
  } else {  // fixed-length strings (as h5py writes numpy bytes)
    const std::size_t len = H5Tget_size(ftype.id());
    std::vector<char> buf(n * len);
    check(H5Aread(attr.id(), ftype.id(), buf.data()), where + ": read attribute '" + name + "'");
    for (std::size_t i = 0; i < n; ++i) {
      std::string s(buf.data() + i * len, len);
      out.push_back(s.substr(0, s.find('\0')));
    }
  }
  return out;
}

namespace {
// An attribute read into one C++ value must hold exactly one element of the
// expected class: HDF5 writes every element of the attribute into the buffer,
// so an N-element attribute read into a scalar would overwrite the stack.
Handle scalar_attribute(const Handle& obj, const std::string& name, const std::string& where, bool allow_float) {
  Handle attr = open_attribute(obj, name, where);
  Handle space{check(H5Aget_space(attr.id()), where + ": dataspace of attribute '" + name + "'"), H5Sclose};
  const H5S_class_t sclass = H5Sget_simple_extent_type(space.id());
  const hssize_t points = H5Sget_simple_extent_npoints(space.id());
  if (sclass == H5S_NULL || points != 1)
    throw StoreError(where + ": attribute '" + name + "' holds " + std::to_string(points < 0 ? 0 : points) +
                     " values, expected a single number");
  Handle type{check(H5Aget_type(attr.id()), where + ": type of attribute '" + name + "'"), H5Tclose};
  const H5T_class_t tclass = H5Tget_class(type.id());
  if (tclass != H5T_INTEGER && !(allow_float && tclass == H5T_FLOAT))
    throw StoreError(where + ": attribute '" + name + "' is not " + (allow_float ? "a number" : "an integer"));
  return attr;
}
}  // namespace

std::int64_t int_attribute(const Handle& obj, const std::string& name, const std::string& where) {
  Handle attr = scalar_attribute(obj, name, where, false);
  std::int64_t v = 0;
  check(H5Aread(attr.id(), H5T_NATIVE_INT64, &v), where + ": read attribute '" + name + "'");
  return v;
}

double real_attribute(const Handle& obj, const std::string& name, const std::string& where) {
  Handle attr = scalar_attribute(obj, name, where, true);
  double v = 0;
  check(H5Aread(attr.id(), H5T_NATIVE_DOUBLE, &v), where + ": read attribute '" + name + "'");
  return v;
}

}  // namespace dinv::h5
