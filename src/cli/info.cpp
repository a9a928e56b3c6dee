// `dinv info`: what this dinv is built on, the MPI world it runs in, the
// resolved configuration, and (with store.path) what the store holds.
#include <exception>
#include <iostream>
#include <sstream>

#include <torch/version.h>

#include "dinv/cli/command.h"
#include "dinv/core/build_info.h"
#include "dinv/core/error.h"
#include "dinv/core/log.h"
#include "dinv/dist/communicator.h"
#include "dinv/dist/world.h"
#include "dinv/store/store.h"

#ifdef DINV_WITH_NCCL
#include <nccl.h>
#endif

namespace dinv::cli {
namespace {

std::string nccl_version() {
#ifdef DINV_WITH_NCCL
  int v = 0;
  ncclGetVersion(&v);
  return std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." + std::to_string(v % 100);
#else
  return "not built (LibTorch without CUDA)";
#endif
}

struct Walk {
  std::ostringstream out;
  std::exception_ptr failure;  // thrown inside the callback, rethrown after H5Ovisit
};

void describe_dataset(hid_t loc, const char* name, std::ostringstream& out) {
  h5::Handle d{h5::check(H5Dopen2(loc, name, H5P_DEFAULT), std::string("open dataset '/") + name + "'"), H5Dclose};
  const auto dims = h5::dataset_dims(d);
  std::string type;
  bool readable = true;
  try {
    type = c10::toString(h5::dataset_dtype(d, name));
  } catch (const StoreError&) {
    type = "(a type dinv does not read)";
    readable = false;
  }
  out << "  /" << name << "  " << type << c10::str(c10::IntArrayRef(dims));
  const std::string n = name;
  if (n.size() >= 5 && n.compare(n.size() - 5, 5, "/done") == 0) {
    if (!readable || dims.size() != 1) {
      out << "  (not a ledger: expected uint8 [units])";
    } else {
      const at::Tensor flags = h5::read_all(d, name);
      out << "  (" << flags.ne(0).sum().item<std::int64_t>() << "/" << dims[0] << " units done)";
    }
  }
  out << "\n";
}

// One line per dataset: path, dtype, shape; plus ledgers' progress. HDF5 calls
// this from C: an exception must not unwind through it (HDF5's state would be
// left half-changed and it crashes later, closing files at exit), so it is
// kept and rethrown once H5Ovisit has returned.
herr_t describe_object(hid_t loc, const char* name, const H5O_info_t* info, void* data) {
  auto& walk = *static_cast<Walk*>(data);
  try {
    if (info->type == H5O_TYPE_DATASET) describe_dataset(loc, name, walk.out);
    return 0;
  } catch (...) {
    walk.failure = std::current_exception();
    return -1;
  }
}

}  // namespace

std::string version_report() {
  std::ostringstream out;
  out << "dinv " << DINV_VERSION << " (git " << DINV_GIT_SHA << ")\n"
      << "  LibTorch " << TORCH_VERSION
#ifdef DINV_WITH_CUDA
      << " (CUDA build)"
#else
      << " (CPU build)"
#endif
      << "\n  MPI      " << dist::mpi_library_version() << "\n  HDF5     " << h5::library_version() << "\n  NCCL     "
      << nccl_version() << "\n  store schema version " << store::kSchemaVersion << "\n";
  return out.str();
}

int run_info(CommandContext& ctx) {
  if (ctx.world.is_root()) {
    std::cout << version_report() << "world: " << ctx.world.describe() << "\n";
  }
  const auto path = ctx.config.get_string("store.path");
  if (!path.empty()) {
    auto store = store::Store::open(path, ctx.world.comm(), false);
    if (ctx.world.is_root()) {
      h5::Handle root = h5::open_group(store.file(), "/");
      std::ostringstream out;
      out << "store " << path << "\n  schema_version " << h5::int_attribute(root, "schema_version", path)
          << ", written by dinv " << h5::string_attribute(root, "dinv_version", path) << ", created "
          << h5::string_attribute(root, "created", path) << "\n";
      Walk walk;
      const herr_t rc = H5Ovisit(store.file().id(), H5_INDEX_NAME, H5_ITER_INC, describe_object, &walk);
      if (walk.failure) {
        h5::error_stack();  // clear what the stopped walk left
        std::rethrow_exception(walk.failure);
      }
      h5::check(rc, "walk " + path);
      std::cout << out.str() << walk.out.str();
    }
  }
  std::cout.flush();
  return 0;
}

}  // namespace dinv::cli
