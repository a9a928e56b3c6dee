// Thin RAII layer over the HDF5 C API (in the spirit of HighFive): every hid_t
// is owned by a Handle that closes it, and every failing call throws a
// StoreError that carries what was being done, on which object, and HDF5's own
// error stack.
#pragma once

#include <hdf5.h>
#include <mpi.h>

#include <cstdint>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

namespace dinv::h5 {

class Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  Handle() = default;
  Handle(hid_t id, Closer closer) : id_(id), closer_(closer) {}
  ~Handle() { reset(); }
  Handle(Handle&& o) noexcept : id_(o.id_), closer_(o.closer_) { o.id_ = H5I_INVALID_HID; }
  Handle& operator=(Handle&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = o.id_;
      closer_ = o.closer_;
      o.id_ = H5I_INVALID_HID;
    }
    return *this;
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;

  hid_t id() const { return id_; }
  bool valid() const { return id_ >= 0; }
  void reset();
  // Close now and report failure (a destructor cannot).
  void close(const std::string& what);

 private:
  hid_t id_ = H5I_INVALID_HID;
  Closer closer_ = nullptr;
};

// Throw a StoreError "<what>: <HDF5 error stack>" when `rc` < 0; otherwise return it.
hid_t check(hid_t rc, const std::string& what);
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

// ---- files -----------------------------------------------------------------
// Create (truncating) or open a file through the MPI-IO driver, collectively
// over `comm`. Object modification times are never recorded, so identical
// work gives identical bytes.
Handle create_file(const std::string& path, MPI_Comm comm);
Handle open_file(const std::string& path, MPI_Comm comm, bool writable);
// Open for reading without MPI-IO (one process; tools and tests).
Handle open_file_serial(const std::string& path);
void flush(const Handle& file, const std::string& path);

// ---- groups and datasets -----------------------------------------------------
bool exists(const Handle& loc, const std::string& path);
Handle create_group(const Handle& loc, const std::string& path);
// Move the link `from` to `to` (creating missing groups); only the links
// change, so it works on objects whose own metadata cannot be read.
void move(const Handle& loc, const std::string& from, const std::string& to);
// Unlink an object (collective on a parallel file); its space is not reclaimed.
void remove(const Handle& loc, const std::string& path);
Handle open_group(const Handle& loc, const std::string& path);
// A fixed-size dataset, allocated at creation and zero-filled, so that later
// writes touch raw data only.
Handle create_dataset(const Handle& loc, const std::string& path, at::ScalarType dtype,
                      const std::vector<std::int64_t>& dims);
Handle open_dataset(const Handle& loc, const std::string& path);
std::vector<std::int64_t> dataset_dims(const Handle& dataset);
at::ScalarType dataset_dtype(const Handle& dataset, const std::string& name);

// Write `rows` (shape [n, dims[1:]...], same dtype as the dataset) at rows
// [row_begin, row_begin + n). With `collective`, every rank of the file's
// communicator must call it (n may be 0 on some ranks).
void write_rows(const Handle& dataset, const std::string& name, std::int64_t row_begin, const at::Tensor& rows,
                bool collective);
// Read rows [begin, end) (independent I/O).
at::Tensor read_rows(const Handle& dataset, const std::string& name, std::int64_t begin, std::int64_t end);
// Read rows [begin, end) (independent I/O). The extents come from the file:
// read_rows refuses a selection above 1 TiB and reports an allocation failure
// as a StoreError naming the file and dataset; a scalar dataset is refused.
at::Tensor read_all(const Handle& dataset, const std::string& name);
// Check a dataset's dtype and shape before reading it (`dims`: -1 = any
// extent): StoreError "'FILE': dataset 'NAME' is int32 [3, 4], expected int64 [*]".
void require_layout(const Handle& dataset, const std::string& name, at::ScalarType dtype,
                    const std::vector<std::int64_t>& dims);

// ---- attributes ------------------------------------------------------------------
bool has_attribute(const Handle& obj, const std::string& name);
void set_attribute(const Handle& obj, const std::string& name, const std::string& value);
void set_attribute(const Handle& obj, const std::string& name, std::int64_t value);
void set_attribute(const Handle& obj, const std::string& name, double value);
void set_attribute(const Handle& obj, const std::string& name, const std::vector<std::string>& values);
std::string string_attribute(const Handle& obj, const std::string& name, const std::string& where);
// Scalar reads check the attribute first: exactly one element (scalar or
// one-element array) of integer class (int) or integer/float class (real);
// anything else is a StoreError naming `where` and the attribute.
std::int64_t int_attribute(const Handle& obj, const std::string& name, const std::string& where);
double real_attribute(const Handle& obj, const std::string& name, const std::string& where);
std::vector<std::string> strings_attribute(const Handle& obj, const std::string& name, const std::string& where);

// Versions of the HDF5 library, e.g. "1.10.8 (parallel)".
std::string library_version();

}  // namespace dinv::h5
