// Typed RAII handles over the HDF5 C API, in the manner of HighFive: a File,
// Group or Dataset owns its identifier, knows which file it lives in and its
// path there, and every failing call throws a StoreError that names them
// ("FILE:/path"), says what was being done, and carries HDF5's error stack.
// <hdf5.h> and <mpi.h> stay inside src/store: callers see these types only.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>

#include "dinv/dist/comm.h"

namespace dinv::h5 {

// HDF5's identifier type hid_t (a 64-bit integer since HDF5 1.10; h5.cpp checks).
using Id = std::int64_t;

// Owns one identifier and closes it the way its kind needs.
class Handle {
 public:
  // A file open by one process closes without a collective; a parallel file's
  // close is collective (see reset).
  enum class Kind { file, local_file, group, dataset, attribute, dataspace, datatype, property_list };

  Handle() = default;
  Handle(Id id, Kind kind) : id_(id), kind_(kind) {}
  ~Handle() { reset(); }
  Handle(Handle&& o) noexcept : id_(o.id_), kind_(o.kind_) { o.id_ = -1; }
  Handle& operator=(Handle&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = o.id_;
      kind_ = o.kind_;
      o.id_ = -1;
    }
    return *this;
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;

  Id id() const { return id_; }
  bool valid() const { return id_ >= 0; }
  bool is_file() const { return kind_ == Kind::file || kind_ == Kind::local_file; }
  void reset();
  // Close now and report failure (a destructor cannot).
  void close(const std::string& what);

 private:
  int close_id(Id id) const;  // the H5?close of this kind

  Id id_ = -1;
  Kind kind_ = Kind::group;
};

// HDF5's current error stack as text (and clear it).
std::string error_stack();
// Turn off HDF5's automatic printing of errors (we raise them instead).
void quiet_errors();
// True once writing to a file failed in this process (a full disk, a quota).
// HDF5 cannot close such a file cleanly: closing flushes metadata to the
// failing disk (and HDF5 1.10 crashes at shutdown after that), while the file
// as last flushed plus the raw data written is consistent, as after kill -9.
// So the process must end without closing it (main aborts).
bool write_failed();
// Versions of the HDF5 library, e.g. "1.10.8 (parallel)".
std::string library_version();

// An open object of a file: its handle, the file's path and its own path
// there, and the attributes every object can carry.
class Object {
 public:
  Id id() const { return handle_.id(); }
  const std::string& file_path() const { return file_; }
  const std::string& path() const { return path_; }  // "/source/label"
  std::string where() const { return file_ + ":" + path_; }

  bool has_attribute(const std::string& name) const;
  void set_attribute(const std::string& name, const std::string& value) const;
  void set_attribute(const std::string& name, std::int64_t value) const;
  void set_attribute(const std::string& name, double value) const;
  void set_attribute(const std::string& name, const std::vector<std::string>& values) const;
  // Reads check the attribute first and name where() and the attribute when
  // it is missing or of another kind. Scalar reads need exactly one element
  // (scalar or one-element array) of integer class (int) or integer/float
  // class (real).
  std::string string_attribute(const std::string& name) const;
  std::vector<std::string> strings_attribute(const std::string& name) const;
  std::int64_t int_attribute(const std::string& name) const;
  double real_attribute(const std::string& name) const;

 protected:
  Object(Handle handle, std::string file, std::string path)
      : handle_(std::move(handle)), file_(std::move(file)), path_(std::move(path)) {}
  // The absolute path of `relative` below this object.
  std::string below(const std::string& relative) const;

  Handle handle_;
  std::string file_, path_;
};

// How a write's ranks take part: every rank of the file's communicator
// together (each may write no rows), or each rank on its own.
enum class Transfer { collective, independent };

// An array of rows: the first extent counts rows, the rest is one row's shape.
class Dataset : public Object {
 public:
  std::vector<std::int64_t> dims() const;
  // Throws a StoreError when the file type is not one dinv reads.
  at::ScalarType dtype() const;
  // Check dtype and shape before reading (`dims`: -1 = any extent):
  // StoreError "'FILE': dataset '/PATH' is int32 [3, 4], expected int64 [*]".
  void require_layout(at::ScalarType dtype, const std::vector<std::int64_t>& dims) const;

  // Write `rows` (shape [n, dims[1:]...], the dataset's dtype) at rows
  // [row_begin, row_begin + n).
  void write_rows(std::int64_t row_begin, const at::Tensor& rows, Transfer transfer) const;
  // Read rows [begin, end) (independent I/O). The extents come from the file:
  // a selection above 1 TiB is refused and an allocation failure is a
  // StoreError naming the dataset; a scalar dataset is refused.
  at::Tensor read_rows(std::int64_t begin, std::int64_t end) const;
  at::Tensor read_all() const;

 private:
  friend class Group;
  Dataset(Handle handle, std::string file, std::string path)
      : Object(std::move(handle), std::move(file), std::move(path)) {}
};

class Group : public Object {
 public:
  // `path`s are relative to this group, or absolute.
  bool exists(const std::string& path) const;
  // Creates missing parent groups. Metadata changes of a parallel file are
  // collective: every rank with the same arguments.
  Group create_group(const std::string& path) const;
  // A new group that no link names yet (collective): its members are created
  // below it as usual, and link() names it. `path` is where it will be linked
  // (for messages).
  Group create_unlinked_group(const std::string& path) const;
  // Collective: link `object` at its path (its parent must exist).
  void link(const Group& object) const;
  Group open_group(const std::string& path) const;
  // A fixed-size dataset, allocated at creation and zero-filled, so that
  // later writes touch raw data only.
  Dataset create_dataset(const std::string& path, at::ScalarType dtype, const std::vector<std::int64_t>& dims) const;
  Dataset open_dataset(const std::string& path) const;
  // Move the link `from` to `to` (creating missing groups); only the links
  // change, so it works on objects whose own metadata cannot be read.
  void move(const std::string& from, const std::string& to) const;
  // Unlink an object; its space is not reclaimed.
  void remove(const std::string& path) const;
  // The paths, relative to this group and in name order, of every dataset
  // below it.
  std::vector<std::string> dataset_paths() const;
  // The names of this group's own links, in name order (reads the group's
  // link table only, not the objects it names).
  std::vector<std::string> link_names() const;

 protected:
  Group(Handle handle, std::string file, std::string path)
      : Object(std::move(handle), std::move(file), std::move(path)) {}
};

class File : public Group {
 public:
  // Create (truncating) or open a file through the MPI-IO driver,
  // collectively over `comm`. Object modification times are never recorded,
  // so identical work gives identical bytes.
  static File create(const std::string& path, const dist::Comm& comm);
  static File open(const std::string& path, const dist::Comm& comm, bool writable);
  // Open for reading without MPI-IO (one process; tools and tests).
  static File open_serial(const std::string& path);

  File() : Group(Handle(), "", "/") {}  // not open
  bool is_open() const { return handle_.valid(); }
  void flush() const;
  // Close now, reporting failures (the destructor closes silently).
  void close();

 private:
  File(Handle handle, std::string file) : Group(std::move(handle), std::move(file), "/") {}
};

}  // namespace dinv::h5
