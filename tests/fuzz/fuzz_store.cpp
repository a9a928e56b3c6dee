// HDF5 stores and results files, structure-aware. The input is not the file's
// bytes (HDF5 fuzzes its own parser) but a program of edits to a valid store
// and a valid results file, so that every run reaches dinv's readers with a
// well-formed file that holds wrong objects: a dataset deleted, replaced by
// one of another type or shape or by a group, an attribute of another type or
// with hundreds of values, a value out of range. Then the readers that take
// such files from others open them: the synthetic samples of a tag, whole and
// selected by a real subset (data/store_samples.cpp), and a sweep's results
// file (classify/results.cpp). Each 4-byte instruction is
// [operation, target, type, size]; the bytes after the program fill the data.
#include <hdf5.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "dinv/classify/results.h"
#include "dinv/core/error.h"
#include "dinv/data/readers.h"
#include "fuzz_util.h"

#include <ATen/ATen.h>

namespace {

// The input, read front to back; past its end it reads zeros.
class Bytes {
 public:
  Bytes(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}
  std::uint8_t next() { return at_ < size_ ? data_[at_++] : 0; }
  bool empty() const { return at_ >= size_; }

 private:
  const std::uint8_t* data_;
  std::size_t size_, at_ = 0;
};

// RAII for the HDF5 ids of this file (the readers under test have their own).
struct Id {
  hid_t id;
  herr_t (*close)(hid_t);
  ~Id() {
    if (id >= 0) close(id);
  }
};

const char* const kObjects[] = {"/source",          "/source/index",     "/source/label",
                                "/samples",         "/samples/t",        "/samples/t/images",
                                "/samples/t/label", "/samples/t/source", "/samples/t/done"};
struct AttributeName {
  const char *object, *name;
};
const AttributeName kStoreAttributes[] = {{"/", "schema_version"},
                                          {"/source", "class_names"},
                                          {"/source", "dataset_fingerprint"},
                                          {"/samples/t", "settings"},
                                          {"/samples/t", "model_fingerprint"}};
const AttributeName kResultsAttributes[] = {{"/", "complete"}, {"/", "schema"}};

hid_t element_type(std::uint8_t kind) {
  switch (kind % 6) {
    case 0:
      return H5T_NATIVE_UINT8;
    case 1:
      return H5T_NATIVE_INT8;
    case 2:
      return H5T_NATIVE_INT32;
    case 3:
      return H5T_NATIVE_INT64;
    case 4:
      return H5T_NATIVE_FLOAT;
    default:
      return H5T_NATIVE_DOUBLE;
  }
}

// Dimensions: rank 0..4, each axis 0..7, at most 4096 elements (the readers'
// behaviour on huge declared sizes is a memory question, not a parsing one).
std::vector<hsize_t> shape_from(std::uint8_t size, Bytes& in) {
  std::vector<hsize_t> dims(size % 5);
  for (auto& d : dims) d = in.next() % 8;
  return dims;
}

hsize_t element_count(const std::vector<hsize_t>& dims) {
  hsize_t n = 1;
  for (auto d : dims) n *= d;
  return n;
}

std::vector<std::uint8_t> fill(std::size_t bytes, Bytes& in) {
  std::vector<std::uint8_t> v(bytes);
  for (auto& b : v) b = in.next();
  return v;
}

Id space_of(const std::vector<hsize_t>& dims) {
  return {dims.empty() ? H5Screate(H5S_SCALAR) : H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr),
          H5Sclose};
}

void write_dataset(hid_t file, const char* path, hid_t type, const std::vector<hsize_t>& dims, const void* data) {
  Id space = space_of(dims);
  Id ds{H5Dcreate2(file, path, type, space.id, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Dclose};
  if (ds.id >= 0 && element_count(dims) > 0) H5Dwrite(ds.id, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
}

void write_numbers(hid_t file, const char* path, hid_t type, const std::vector<hsize_t>& dims, Bytes& in) {
  const auto data = fill(element_count(dims) * H5Tget_size(type), in);
  write_dataset(file, path, type, dims, data.data());
}

void write_group(hid_t file, const char* path) {
  Id g{H5Gcreate2(file, path, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose};
}

Id string_type() {
  Id t{H5Tcopy(H5T_C_S1), H5Tclose};
  H5Tset_size(t.id, H5T_VARIABLE);
  H5Tset_cset(t.id, H5T_CSET_UTF8);
  return t;
}

void set_strings(hid_t file, const AttributeName& a, const std::vector<std::string>& values, bool scalar) {
  Id obj{H5Oopen(file, a.object, H5P_DEFAULT), H5Oclose};
  if (obj.id < 0) return;
  if (H5Aexists(obj.id, a.name) > 0) H5Adelete(obj.id, a.name);
  Id type = string_type();
  Id space = space_of(scalar ? std::vector<hsize_t>{} : std::vector<hsize_t>{values.size()});
  Id attr{H5Acreate2(obj.id, a.name, type.id, space.id, H5P_DEFAULT, H5P_DEFAULT), H5Aclose};
  std::vector<const char*> ptrs;
  for (const auto& v : values) ptrs.push_back(v.c_str());
  if (attr.id >= 0 && !ptrs.empty()) H5Awrite(attr.id, type.id, ptrs.data());
}

void set_numbers(hid_t file, const AttributeName& a, hid_t type, const std::vector<hsize_t>& dims, const void* data) {
  Id obj{H5Oopen(file, a.object, H5P_DEFAULT), H5Oclose};
  if (obj.id < 0) return;
  if (H5Aexists(obj.id, a.name) > 0) H5Adelete(obj.id, a.name);
  Id space = space_of(dims);
  Id attr{H5Acreate2(obj.id, a.name, type, space.id, H5P_DEFAULT, H5P_DEFAULT), H5Aclose};
  if (attr.id >= 0 && element_count(dims) > 0) H5Awrite(attr.id, type, data);
}

// A finished tag 't' of 4 samples (2x2 images) from source images 0..3 of a
// 2-class dataset, as embed and generate write it.
void write_valid_store(hid_t f) {
  const std::int64_t version = 1, zero_to_three[] = {0, 1, 2, 3}, labels[] = {0, 1, 0, 1};
  set_numbers(f, kStoreAttributes[0], H5T_NATIVE_INT64, {}, &version);
  write_group(f, "/source");
  set_strings(f, kStoreAttributes[1], {"disk", "ring"}, false);
  set_strings(f, kStoreAttributes[2], {"fp"}, true);
  write_dataset(f, "/source/index", H5T_NATIVE_INT64, {4}, zero_to_three);
  write_dataset(f, "/source/label", H5T_NATIVE_INT64, {4}, labels);
  write_group(f, "/samples");
  write_group(f, "/samples/t");
  set_strings(f, kStoreAttributes[3], {"mode=perturb"}, true);
  set_strings(f, kStoreAttributes[4], {"model"}, true);
  std::uint8_t pixels[4 * 2 * 2 * 3];
  for (std::size_t i = 0; i < sizeof pixels; ++i) pixels[i] = static_cast<std::uint8_t>(i * 7);
  write_dataset(f, "/samples/t/images", H5T_NATIVE_UINT8, {4, 2, 2, 3}, pixels);
  write_dataset(f, "/samples/t/label", H5T_NATIVE_INT64, {4}, labels);
  write_dataset(f, "/samples/t/source", H5T_NATIVE_INT64, {4}, zero_to_three);
  const std::uint8_t done[] = {1, 1};
  write_dataset(f, "/samples/t/done", H5T_NATIVE_UINT8, {2}, done);
}

void write_valid_results(hid_t f) {
  const std::int64_t complete = 1;
  set_numbers(f, kResultsAttributes[0], H5T_NATIVE_INT64, {}, &complete);
  set_strings(f, kResultsAttributes[1], {"dinv-train-results/1"}, true);
}

void replace_attribute(hid_t f, const AttributeName& a, std::uint8_t type, std::uint8_t size, Bytes& in) {
  if (type % 8 >= 6) {  // strings: one scalar, or `size` values (up to 600: the 512-value case)
    const std::size_t count = type % 8 == 6 ? 1 : size * 600 / 256;
    std::vector<std::string> values(count);
    for (auto& v : values)
      for (std::uint8_t c = in.next(); c != 0 && v.size() < 16; c = in.next()) v.push_back(static_cast<char>(c));
    set_strings(f, a, values, type % 8 == 6);
    return;
  }
  const hid_t t = element_type(type);
  const std::vector<hsize_t> dims = size < 128 ? std::vector<hsize_t>{} : std::vector<hsize_t>{size * 600u / 256};
  const auto data = fill(element_count(dims) * H5Tget_size(t), in);
  set_numbers(f, a, t, dims, data.data());
}

// Overwrite one element of a numeric dataset with a chosen value (a label or
// source index out of range, a chunk marked unfinished).
void poke(hid_t f, const char* path, std::uint8_t where, std::uint8_t value) {
  Id ds{H5Dopen2(f, path, H5P_DEFAULT), H5Dclose};
  if (ds.id < 0) return;
  Id space{H5Dget_space(ds.id), H5Sclose};
  const hssize_t n = H5Sget_simple_extent_npoints(space.id);
  if (n <= 0 || n > 4096) return;
  std::vector<std::int64_t> v(static_cast<std::size_t>(n));
  if (H5Dread(ds.id, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()) < 0) return;
  const std::int64_t values[] = {-1, 0, 1, 2, 4, 1000, INT64_MIN, INT64_MAX};
  v[where % v.size()] = values[value % 8];
  H5Dwrite(ds.id, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data());
}

void apply(hid_t store, hid_t results, Bytes& in, int instructions) {
  for (int i = 0; i < instructions && !in.empty(); ++i) {
    const std::uint8_t op = in.next(), target = in.next(), type = in.next(), size = in.next();
    const char* object = kObjects[target % (sizeof kObjects / sizeof *kObjects)];
    switch (op % 6) {
      case 0:  // delete an object
        H5Ldelete(store, object, H5P_DEFAULT);
        break;
      case 1:  // replace it by a dataset of another type and shape
        H5Ldelete(store, object, H5P_DEFAULT);
        write_numbers(store, object, element_type(type), shape_from(size, in), in);
        break;
      case 2:  // replace it by a group
        H5Ldelete(store, object, H5P_DEFAULT);
        write_group(store, object);
        break;
      case 3:
        replace_attribute(store, kStoreAttributes[target % 5], type, size, in);
        break;
      case 4:
        replace_attribute(results, kResultsAttributes[target % 2], type, size, in);
        break;
      default:
        poke(store, object, type, size);
    }
  }
}

void read_samples(const std::string& store, bool follow_real) {
  dinv::data::SampleSelection sel;
  sel.follow_real = follow_real;
  sel.real_indices = {0, 2, 3};
  sel.real_fingerprint = "fp";
  sel.per_source = follow_real ? 1 : 0;
  sel.total = follow_real ? 2 : 0;
  const auto samples = dinv::data::select_store_samples(store, {"t"}, sel);
  for (std::int64_t i = 0; i < samples.dataset->size(); ++i) (void)samples.dataset->get(i);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const bool quiet = [] { return H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr) >= 0; }();
  (void)quiet;
  const std::string store = dinv::fuzz::temp_dir() + "/store.h5", results = dinv::fuzz::temp_dir() + "/results.h5";
  Bytes in(data, size);
  {
    Id s{H5Fcreate(store.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose};
    Id r{H5Fcreate(results.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose};
    if (s.id < 0 || r.id < 0) std::abort();
    write_valid_store(s.id);
    write_valid_results(r.id);
    apply(s.id, r.id, in, 16);
  }
  for (bool follow_real : {false, true}) {
    try {
      read_samples(store, follow_real);
    } catch (const dinv::Error&) {
    }
  }
  (void)dinv::classify::results_complete(results);  // never throws: an unreadable file is "not complete"
  return 0;
}
