#include "dinv/store/h5.h"

#include <hdf5.h>
#include <mpi.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <exception>
#include <limits>
#include <type_traits>

#include <ATen/ATen.h>

#include "dinv/core/error.h"

namespace dinv::h5 {

static_assert(std::is_same_v<hid_t, Id>, "h5::Id must be HDF5's hid_t");

namespace {

// The most one read_rows call allocates (a dataset's extents come from the
// file, so a damaged file could ask for anything).
constexpr std::uint64_t kMaxReadBytes = std::uint64_t(1) << 40;

// ------------------------------------------------------------------ errors

herr_t walk_error(unsigned n, const H5E_error2_t* err, void* data) {
  auto& out = *static_cast<std::string*>(data);
  char major[128] = "", minor[128] = "";
  H5Eget_msg(err->maj_num, nullptr, major, sizeof major);
  H5Eget_msg(err->min_num, nullptr, minor, sizeof minor);
  out += "\n    #" + std::to_string(n) + " " + (err->func_name ? err->func_name : "?") + ": " +
         (err->desc ? err->desc : "") + " (" + major + ": " + minor + ")";
  return 0;
}

// Throw a StoreError "<what> failed: <HDF5 error stack>" when `rc` < 0; otherwise return it.
template <typename T>
T check(T rc, const std::string& what) {
  if (rc < 0) throw StoreError(what + " failed" + error_stack());
  return rc;
}

std::atomic<bool> a_write_failed{false};

// check() for calls that write to the file: remembers the failure and adds
// what the system said (errno survives HDF5 and MPI-IO for these codes).
template <typename Call>
auto check_write(Call call, const std::string& what) {
  errno = 0;
  const auto rc = call();
  if (rc >= 0) return rc;
  const int err = errno;
  a_write_failed = true;
  const bool known = err == ENOSPC || err == EDQUOT || err == EFBIG || err == EIO || err == EROFS;
  throw StoreError(what + " failed" + (known ? std::string(": ") + std::strerror(err) : std::string()) + error_stack());
}

// ------------------------------------------------------------------ handles

Handle own(hid_t id, Handle::Kind kind, const std::string& what) { return {check(id, what), kind}; }

Handle plist(hid_t cls, const std::string& what) { return own(H5Pcreate(cls), Handle::Kind::property_list, what); }

// The file access of every parallel file: MPI-IO over `comm`, collective
// metadata writes, and strong closing: closing the file closes what is still
// open in it (handles held elsewhere become invalid), so that a store closes
// cleanly before a rename or exit.
Handle parallel_access(const dist::Comm& comm) {
  Handle fapl = plist(H5P_FILE_ACCESS, "file access property list");
  check(H5Pset_fapl_mpio(fapl.id(), MPI_Comm_f2c(comm.handle()), MPI_INFO_NULL), "H5Pset_fapl_mpio");
  check(H5Pset_coll_metadata_write(fapl.id(), 1), "H5Pset_coll_metadata_write");
  check(H5Pset_fclose_degree(fapl.id(), H5F_CLOSE_STRONG), "H5Pset_fclose_degree");
  return fapl;
}

// A file open on one process closes without a collective, so it may close
// while an exception unwinds (Handle::reset leaves only collective closes to
// the abort).
Handle::Kind file_kind(const dist::Comm& comm) {
  return comm.size() == 1 ? Handle::Kind::local_file : Handle::Kind::file;
}

// Object creation properties that keep files byte-reproducible.
void no_times(const Handle& ocpl) { check(H5Pset_obj_track_times(ocpl.id(), 0), "H5Pset_obj_track_times"); }

Handle link_creation_plist() {
  Handle lcpl = plist(H5P_LINK_CREATE, "link creation property list");
  check(H5Pset_create_intermediate_group(lcpl.id(), 1), "H5Pset_create_intermediate_group");
  return lcpl;
}

Handle group_creation_plist() {
  Handle p = plist(H5P_GROUP_CREATE, "group creation property list");
  no_times(p);
  return p;
}

// Contiguous, allocated and zero-filled at creation.
Handle dataset_creation_plist() {
  Handle p = plist(H5P_DATASET_CREATE, "dataset creation property list");
  no_times(p);
  check(H5Pset_layout(p.id(), H5D_CONTIGUOUS), "H5Pset_layout");
  check(H5Pset_alloc_time(p.id(), H5D_ALLOC_TIME_EARLY), "H5Pset_alloc_time");
  check(H5Pset_fill_time(p.id(), H5D_FILL_TIME_ALLOC), "H5Pset_fill_time");
  return p;
}

Handle transfer_plist(Transfer transfer) {
  Handle p = plist(H5P_DATASET_XFER, "transfer property list");
  check(H5Pset_dxpl_mpio(p.id(), transfer == Transfer::collective ? H5FD_MPIO_COLLECTIVE : H5FD_MPIO_INDEPENDENT),
        "H5Pset_dxpl_mpio");
  return p;
}

Handle vl_string_type() {
  Handle t = own(H5Tcopy(H5T_C_S1), Handle::Kind::datatype, "H5Tcopy");
  check(H5Tset_size(t.id(), H5T_VARIABLE), "H5Tset_size");
  check(H5Tset_cset(t.id(), H5T_CSET_UTF8), "H5Tset_cset");
  return t;
}

Handle scalar_space() { return own(H5Screate(H5S_SCALAR), Handle::Kind::dataspace, "H5Screate"); }

Handle simple_space(const std::vector<hsize_t>& dims) {
  return own(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), Handle::Kind::dataspace,
             "H5Screate_simple");
}

// ------------------------------------------------------------------ types

hid_t file_type(at::ScalarType t, const std::string& where) {
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
      throw StoreError(where + ": unsupported dtype " + std::string(c10::toString(t)));
  }
}

hid_t memory_type(at::ScalarType t, const std::string& where) {
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
      throw StoreError(where + ": unsupported dtype " + std::string(c10::toString(t)));
  }
}

std::string rows_text(std::int64_t begin, std::int64_t end) {
  return "rows [" + std::to_string(begin) + ", " + std::to_string(end) + ")";
}

}  // namespace

// ------------------------------------------------------------------ basics

void Handle::reset() {
  // Closing a parallel file is collective under MPI-IO. While an exception
  // unwinds on one rank the others may be waiting in another collective:
  // closing here would deadlock the job instead of letting main report and
  // abort it.
  // A file whose writes failed is left open whatever its kind: closing
  // it flushes to the failing disk and can cut it to a stale end of file
  // (seen with HDF5 1.10 on one rank), while the file as it stands is what a
  // kill -9 at that write would leave (write_failed).
  const bool collective_close = kind_ == Kind::file;
  const bool skip = (collective_close && std::uncaught_exceptions() > 0) || (is_file() && a_write_failed);
  if (id_ >= 0 && !skip) close_id(id_);
  id_ = -1;
}

void Handle::close(const std::string& what) {
  if (id_ < 0) return;
  const hid_t id = id_;
  id_ = -1;
  // Closing a file flushes it: a failure there is a failed write.
  if (is_file())
    check_write([&] { return close_id(id); }, what);
  else
    check(close_id(id), what);
}

int Handle::close_id(Id id) const {
  switch (kind_) {
    case Kind::file:
    case Kind::local_file:
      return H5Fclose(id);
    case Kind::group:
      return H5Gclose(id);
    case Kind::dataset:
      return H5Dclose(id);
    case Kind::attribute:
      return H5Aclose(id);
    case Kind::dataspace:
      return H5Sclose(id);
    case Kind::datatype:
      return H5Tclose(id);
    case Kind::property_list:
      return H5Pclose(id);
  }
  return -1;
}

std::string error_stack() {
  std::string out;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, walk_error, &out);
  H5Eclear2(H5E_DEFAULT);
  return out.empty() ? "" : "\n  HDF5 error stack:" + out;
}

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

File File::create(const std::string& path, const dist::Comm& comm) {
  quiet_errors();
  const Handle fapl = parallel_access(comm);
  Handle fcpl = plist(H5P_FILE_CREATE, "file creation property list");
  no_times(fcpl);
  return File(own(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, fcpl.id(), fapl.id()), file_kind(comm),
                  "create HDF5 file '" + path + "'"),
              path);
}

// A missing, unreadable or folder path said in one sentence: HDF5 reports each
// as a stack of four errors that does not name the cause first.
void require_openable(const std::string& path, bool writable) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0)
    throw StoreError("cannot open HDF5 file '" + path +
                     "': " + (errno == ENOENT ? std::string("it does not exist") : std::strerror(errno)));
  if (S_ISDIR(st.st_mode)) throw StoreError("cannot open HDF5 file '" + path + "': it is a folder");
  if (::access(path.c_str(), writable ? R_OK | W_OK : R_OK) != 0)
    throw StoreError("cannot open HDF5 file '" + path + "' to " + (writable ? "write" : "read") + ": " +
                     std::strerror(errno));
}

File File::open(const std::string& path, const dist::Comm& comm, bool writable) {
  quiet_errors();
  require_openable(path, writable);
  const Handle fapl = parallel_access(comm);
  return File(own(H5Fopen(path.c_str(), writable ? H5F_ACC_RDWR : H5F_ACC_RDONLY, fapl.id()), file_kind(comm),
                  "open HDF5 file '" + path + "'"),
              path);
}

File File::open_serial(const std::string& path) {
  quiet_errors();
  require_openable(path, false);
  return File(own(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), Handle::Kind::local_file,
                  "open HDF5 file '" + path + "'"),
              path);
}

void File::flush() const {
  check_write([&] { return H5Fflush(id(), H5F_SCOPE_GLOBAL); }, "flush '" + file_ + "'");
}

void File::close() { handle_.close("close '" + file_ + "'"); }

// ---------------------------------------------------------- groups, datasets

std::string Object::below(const std::string& relative) const {
  if (!relative.empty() && relative[0] == '/') return relative;
  return path_ == "/" ? "/" + relative : path_ + "/" + relative;
}

bool Group::exists(const std::string& path) const {
  // Walk the path one link at a time: H5Lexists fails on a missing parent.
  std::string prefix;
  std::size_t pos = 0;
  while (pos <= path.size()) {
    const auto next = path.find('/', pos);
    const auto part = path.substr(pos, next == std::string::npos ? std::string::npos : next - pos);
    if (!part.empty()) {
      prefix += (prefix.empty() && path[0] != '/' ? "" : "/") + part;
      if (check(H5Lexists(id(), prefix.c_str(), H5P_DEFAULT), "look up '" + prefix + "' in '" + file_ + "'") <= 0)
        return false;
    }
    if (next == std::string::npos) break;
    pos = next + 1;
  }
  return true;
}

void Group::move(const std::string& from, const std::string& to) const {
  Handle lcpl = link_creation_plist();
  check(H5Lmove(id(), from.c_str(), id(), to.c_str(), lcpl.id(), H5P_DEFAULT),
        "move '" + from + "' to '" + to + "' in '" + file_ + "'");
}

void Group::remove(const std::string& path) const {
  check(H5Ldelete(id(), path.c_str(), H5P_DEFAULT), "remove '" + path + "' from '" + file_ + "'");
}

Group Group::create_group(const std::string& path) const {
  Handle lcpl = link_creation_plist();
  Handle gcpl = group_creation_plist();
  return Group(own(H5Gcreate2(id(), path.c_str(), lcpl.id(), gcpl.id(), H5P_DEFAULT), Handle::Kind::group,
                   "create group '" + below(path) + "' in '" + file_ + "'"),
               file_, below(path));
}

Group Group::create_unlinked_group(const std::string& path) const {
  Handle gcpl = group_creation_plist();
  return Group(own(H5Gcreate_anon(id(), gcpl.id(), H5P_DEFAULT), Handle::Kind::group,
                   "create group '" + below(path) + "' (unlinked) in '" + file_ + "'"),
               file_, below(path));
}

void Group::link(const Group& object) const {
  check_write([&] { return H5Olink(object.id(), id(), object.path().c_str(), H5P_DEFAULT, H5P_DEFAULT); },
              "link '" + object.path() + "' in '" + file_ + "'");
}

Group Group::open_group(const std::string& path) const {
  if (!exists(path)) throw StoreError(file_ + ": group '" + below(path) + "' does not exist");
  return Group(own(H5Gopen2(id(), path.c_str(), H5P_DEFAULT), Handle::Kind::group,
                   "open group '" + below(path) + "' in '" + file_ + "'"),
               file_, below(path));
}

Dataset Group::create_dataset(const std::string& path, at::ScalarType dtype,
                              const std::vector<std::int64_t>& dims) const {
  const std::string full = below(path);
  Handle space = simple_space({dims.begin(), dims.end()});
  Handle dcpl = dataset_creation_plist();
  Handle lcpl = link_creation_plist();
  // Early allocation writes the fill values: this is where a full disk shows first.
  const hid_t dataset = check_write(
      [&] {
        return H5Dcreate2(id(), path.c_str(), file_type(dtype, file_ + ":" + full), space.id(), lcpl.id(), dcpl.id(),
                          H5P_DEFAULT);
      },
      "create dataset '" + full + "' in '" + file_ + "'");
  return Dataset(Handle(dataset, Handle::Kind::dataset), file_, full);
}

Dataset Group::open_dataset(const std::string& path) const {
  const std::string full = below(path);
  if (!exists(path)) throw StoreError(file_ + ": dataset '" + full + "' does not exist");
  return Dataset(own(H5Dopen2(id(), path.c_str(), H5P_DEFAULT), Handle::Kind::dataset,
                     "open dataset '" + full + "' in '" + file_ + "'"),
                 file_, full);
}

namespace {

struct DatasetWalk {
  std::vector<std::string> paths;
};

herr_t collect_link(hid_t, const char* name, const H5L_info_t*, void* data) {
  static_cast<std::vector<std::string>*>(data)->emplace_back(name);
  return 0;
}

herr_t collect_dataset(hid_t, const char* name, const H5O_info_t* info, void* data) {
  if (info->type == H5O_TYPE_DATASET) static_cast<DatasetWalk*>(data)->paths.emplace_back(name);
  return 0;
}

}  // namespace

std::vector<std::string> Group::dataset_paths() const {
  DatasetWalk walk;
  check(H5Ovisit(id(), H5_INDEX_NAME, H5_ITER_INC, collect_dataset, &walk), "walk '" + where() + "'");
  return walk.paths;
}

std::vector<std::string> Group::link_names() const {
  std::vector<std::string> names;
  check(H5Literate(id(), H5_INDEX_NAME, H5_ITER_INC, nullptr, collect_link, &names),
        "list the links of '" + where() + "'");
  return names;
}

std::vector<std::int64_t> Dataset::dims() const {
  Handle space = own(H5Dget_space(id()), Handle::Kind::dataspace, where() + ": H5Dget_space");
  const int rank = check(H5Sget_simple_extent_ndims(space.id()), where() + ": H5Sget_simple_extent_ndims");
  std::vector<hsize_t> dims(rank);
  H5Sget_simple_extent_dims(space.id(), dims.data(), nullptr);
  for (auto d : dims)
    if (d > static_cast<hsize_t>(std::numeric_limits<std::int64_t>::max()))
      throw StoreError("'" + file_ + "': dataset '" + path_ + "' has an extent of " + std::to_string(d) +
                       " (more than int64 holds)");
  return {dims.begin(), dims.end()};
}

at::ScalarType Dataset::dtype() const {
  Handle type = own(H5Dget_type(id()), Handle::Kind::datatype, where() + ": H5Dget_type");
  for (auto t : {at::kFloat, at::kDouble, at::kByte, at::kInt, at::kLong})
    if (H5Tequal(type.id(), file_type(t, where())) > 0) return t;
  throw StoreError(where() + ": dataset has a type dinv does not read");
}

void Dataset::require_layout(at::ScalarType dtype, const std::vector<std::int64_t>& dims) const {
  const auto found = this->dims();
  std::string found_type;
  bool type_ok = false;
  try {
    const auto t = this->dtype();
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
  throw StoreError("'" + file_ + "': dataset '" + path_ + "' is " + found_type + " " +
                   c10::str(c10::IntArrayRef(found)) + ", expected " + c10::toString(dtype) + " " + want);
}

namespace {

// File-space selection of rows [begin, begin+n) of `dataset` (`dims` its
// extents); `counts` gets the selection's extents.
Handle row_selection(const Dataset& dataset, const std::vector<std::int64_t>& dims, std::int64_t begin, std::int64_t n,
                     std::vector<hsize_t>* counts) {
  if (dims.empty()) throw StoreError(dataset.where() + " is a scalar dataset, expected an array of rows");
  if (begin < 0 || n < 0 || begin > dims[0] || n > dims[0] - begin)
    throw StoreError(dataset.where() + ": " + rows_text(begin, begin + n) + " are outside the dataset's " +
                     std::to_string(dims[0]) + " rows");
  Handle space = own(H5Dget_space(dataset.id()), Handle::Kind::dataspace, dataset.where() + ": H5Dget_space");
  std::vector<hsize_t> start(dims.size(), 0), count(dims.begin(), dims.end());
  start[0] = static_cast<hsize_t>(begin);
  count[0] = static_cast<hsize_t>(n);
  if (n == 0)
    check(H5Sselect_none(space.id()), "H5Sselect_none");
  else
    check(H5Sselect_hyperslab(space.id(), H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr),
          "select " + rows_text(begin, begin + n) + " of " + dataset.where());
  *counts = count;
  return space;
}

}  // namespace

void Dataset::write_rows(std::int64_t row_begin, const at::Tensor& rows, Transfer transfer) const {
  const auto dims = this->dims();
  if (dims.empty()) throw StoreError(where() + " is a scalar dataset, expected an array of rows");
  const std::int64_t n = rows.defined() && rows.numel() > 0 ? rows.size(0) : 0;
  const auto stored = dtype();
  if (n > 0) {
    auto expected = dims;
    expected[0] = n;
    if (rows.sizes().vec() != expected)
      throw StoreError(where() + ": rows of shape " + c10::str(rows.sizes()) + " do not fit the dataset's rows " +
                       c10::str(c10::IntArrayRef(dims).slice(1)));
    if (rows.scalar_type() != stored)
      throw StoreError(where() + ": writing " + std::string(c10::toString(rows.scalar_type())) + " into a dataset of " +
                       c10::toString(stored));
  }
  std::vector<hsize_t> count;
  Handle file_space = row_selection(*this, dims, row_begin, n, &count);
  Handle mem_space = simple_space(n > 0 ? count : std::vector<hsize_t>{1});
  if (n == 0) check(H5Sselect_none(mem_space.id()), "H5Sselect_none");
  Handle dxpl = transfer_plist(transfer);
  const at::Tensor data = n > 0 ? rows.cpu().contiguous() : at::empty({1}, at::kByte);
  const hid_t mtype = memory_type(n > 0 ? data.scalar_type() : stored, where());
  check_write([&] { return H5Dwrite(id(), mtype, mem_space.id(), file_space.id(), dxpl.id(), data.data_ptr()); },
              "write " + rows_text(row_begin, row_begin + n) + " of " + path_ + " in '" + file_ + "'");
}

at::Tensor Dataset::read_rows(std::int64_t begin, std::int64_t end) const {
  std::vector<hsize_t> count;
  Handle file_space = row_selection(*this, dims(), begin, end - begin, &count);
  const auto type = dtype();
  std::vector<std::int64_t> shape(count.begin(), count.end());
  // The extents come from the file: check the size before allocating.
  std::uint64_t bytes = at::elementSize(type);
  for (auto d : shape) {
    if (d != 0 && bytes > kMaxReadBytes / static_cast<std::uint64_t>(d))
      throw StoreError(where() + ": reading " + rows_text(begin, end) + " of shape " +
                       c10::str(c10::IntArrayRef(shape)) + " would need more than " + std::to_string(kMaxReadBytes) +
                       " bytes");
    bytes *= static_cast<std::uint64_t>(d);
  }
  at::Tensor out;
  try {
    out = at::empty(shape, at::TensorOptions().dtype(type));
  } catch (const std::exception&) {
    throw StoreError(where() + ": cannot allocate " + std::to_string(bytes) + " bytes for " + rows_text(begin, end));
  }
  if (end == begin) return out;
  Handle mem_space = simple_space(count);
  check(H5Dread(id(), memory_type(type, where()), mem_space.id(), file_space.id(), H5P_DEFAULT, out.data_ptr()),
        "read " + rows_text(begin, end) + " of " + where());
  return out;
}

at::Tensor Dataset::read_all() const {
  const auto d = dims();
  if (d.empty()) throw StoreError(where() + " is a scalar dataset, expected an array of rows");
  return read_rows(0, d[0]);
}

// -------------------------------------------------------------- attributes

namespace {

Handle open_attribute(const Object& obj, const std::string& name) {
  if (!obj.has_attribute(name)) throw StoreError(obj.where() + ": attribute '" + name + "' is missing");
  return own(H5Aopen(obj.id(), name.c_str(), H5P_DEFAULT), Handle::Kind::attribute,
             obj.where() + ": open attribute '" + name + "'");
}

// Replace attribute `name` of `obj` with a new one of `type` and `space`.
Handle fresh_attribute(const Object& obj, const std::string& name, hid_t type, hid_t space) {
  if (obj.has_attribute(name))
    check(H5Adelete(obj.id(), name.c_str()), obj.where() + ": delete attribute '" + name + "'");
  return own(H5Acreate2(obj.id(), name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT), Handle::Kind::attribute,
             obj.where() + ": create attribute '" + name + "'");
}

void write_attribute(const Object& obj, const std::string& name, const Handle& attribute, hid_t memory_type,
                     const void* data) {
  check(H5Awrite(attribute.id(), memory_type, data), obj.where() + ": write attribute '" + name + "'");
}

// An attribute read into one C++ value must hold exactly one element of the
// expected class: HDF5 writes every element of the attribute into the buffer,
// so an N-element attribute read into a scalar would overwrite the stack.
Handle scalar_attribute(const Object& obj, const std::string& name, bool allow_float) {
  const std::string where = obj.where();
  Handle attr = open_attribute(obj, name);
  Handle space =
      own(H5Aget_space(attr.id()), Handle::Kind::dataspace, where + ": dataspace of attribute '" + name + "'");
  const H5S_class_t sclass = H5Sget_simple_extent_type(space.id());
  const hssize_t points = H5Sget_simple_extent_npoints(space.id());
  if (sclass == H5S_NULL || points != 1)
    throw StoreError(where + ": attribute '" + name + "' holds " + std::to_string(points < 0 ? 0 : points) +
                     " values, expected a single number");
  Handle type = own(H5Aget_type(attr.id()), Handle::Kind::datatype, where + ": type of attribute '" + name + "'");
  const H5T_class_t tclass = H5Tget_class(type.id());
  if (tclass != H5T_INTEGER && !(allow_float && tclass == H5T_FLOAT))
    throw StoreError(where + ": attribute '" + name + "' is not " + (allow_float ? "a number" : "an integer"));
  return attr;
}

}  // namespace

bool Object::has_attribute(const std::string& name) const {
  return check(H5Aexists(id(), name.c_str()), where() + ": look up attribute '" + name + "'") > 0;
}

void Object::set_attribute(const std::string& name, const std::string& value) const {
  Handle type = vl_string_type();
  Handle space = scalar_space();
  Handle attr = fresh_attribute(*this, name, type.id(), space.id());
  const char* p = value.c_str();
  write_attribute(*this, name, attr, type.id(), &p);
}

void Object::set_attribute(const std::string& name, std::int64_t value) const {
  Handle space = scalar_space();
  Handle attr = fresh_attribute(*this, name, H5T_STD_I64LE, space.id());
  write_attribute(*this, name, attr, H5T_NATIVE_INT64, &value);
}

void Object::set_attribute(const std::string& name, double value) const {
  Handle space = scalar_space();
  Handle attr = fresh_attribute(*this, name, H5T_IEEE_F64LE, space.id());
  write_attribute(*this, name, attr, H5T_NATIVE_DOUBLE, &value);
}

void Object::set_attribute(const std::string& name, const std::vector<std::string>& values) const {
  Handle type = vl_string_type();
  Handle space = simple_space({static_cast<hsize_t>(values.size())});
  Handle attr = fresh_attribute(*this, name, type.id(), space.id());
  std::vector<const char*> ptrs;
  for (const auto& v : values) ptrs.push_back(v.c_str());
  if (!values.empty()) write_attribute(*this, name, attr, type.id(), ptrs.data());
}

std::string Object::string_attribute(const std::string& name) const {
  auto v = strings_attribute(name);
  if (v.size() != 1) throw StoreError(where() + ": attribute '" + name + "' is not a single string");
  return v[0];
}

std::vector<std::string> Object::strings_attribute(const std::string& name) const {
  const std::string where = this->where();
  Handle attr = open_attribute(*this, name);
  Handle ftype = own(H5Aget_type(attr.id()), Handle::Kind::datatype, where + ": type of attribute '" + name + "'");
  if (H5Tget_class(ftype.id()) != H5T_STRING) throw StoreError(where + ": attribute '" + name + "' is not a string");
  Handle space =
      own(H5Aget_space(attr.id()), Handle::Kind::dataspace, where + ": dataspace of attribute '" + name + "'");
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

std::int64_t Object::int_attribute(const std::string& name) const {
  Handle attr = scalar_attribute(*this, name, false);
  std::int64_t v = 0;
  check(H5Aread(attr.id(), H5T_NATIVE_INT64, &v), where() + ": read attribute '" + name + "'");
  return v;
}

double Object::real_attribute(const std::string& name) const {
  Handle attr = scalar_attribute(*this, name, true);
  double v = 0;
  check(H5Aread(attr.id(), H5T_NATIVE_DOUBLE, &v), where() + ": read attribute '" + name + "'");
  return v;
}

}  // namespace dinv::h5
