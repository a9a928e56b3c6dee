// `dinv info`: what this dinv is built on, the MPI world it runs in, the
// resolved configuration, and (with store.path) what the store holds.
#include <mpi.h>

#include <iostream>
#include <sstream>

#include <torch/version.h>

#include "dinv/cli/command.h"
#include "dinv/core/build_info.h"
#include "dinv/core/log.h"
#include "dinv/dist/communicator.h"
#include "dinv/dist/world.h"
#include "dinv/store/store.h"

#ifdef DINV_WITH_NCCL
#include <nccl.h>
#endif

namespace dinv::cli {
namespace {

std::string mpi_library_version() {
  char text[MPI_MAX_LIBRARY_VERSION_STRING];
  int len = 0;
  MPI_Get_library_version(text, &len);
  std::string v(text, len);
  v = v.substr(0, v.find_first_of("\n,"));
  int major = 0, minor = 0;
  MPI_Get_version(&major, &minor);
  return v + " (MPI " + std::to_string(major) + "." + std::to_string(minor) + ")";
}

std::string nccl_version() {
#ifdef DINV_WITH_NCCL
  int v = 0;
  ncclGetVersion(&v);
  return std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." + std::to_string(v % 100);
#else
  return "not built (LibTorch without CUDA)";
#endif
}

// One line per dataset: path, dtype, shape; plus ledgers' progress.
herr_t describe_object(hid_t loc, const char* name, const H5O_info_t* info, void* data) {
  auto& out = *static_cast<std::ostringstream*>(data);
  if (info->type != H5O_TYPE_DATASET) return 0;
  h5::Handle d{H5Dopen2(loc, name, H5P_DEFAULT), H5Dclose};
  const auto dims = h5::dataset_dims(d);
  out << "  /" << name << "  " << c10::toString(h5::dataset_dtype(d, name)) << c10::str(c10::IntArrayRef(dims));
  const std::string n = name;
  if (n.size() >= 5 && n.compare(n.size() - 5, 5, "/done") == 0) {
    const at::Tensor flags = h5::read_all(d, name);
    out << "  (" << flags.sum().item<std::int64_t>() << "/" << dims[0] << " units done)";
  }
  out << "\n";
  return 0;
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
      << "\n  MPI      " << mpi_library_version() << "\n  HDF5     " << h5::library_version()
      << "\n  NCCL     " << nccl_version() << "\n  store schema version " << store::kSchemaVersion << "\n";
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
      h5::check(H5Ovisit(store.file().id(), H5_INDEX_NAME, H5_ITER_INC, describe_object, &out), "walk " + path);
      std::cout << out.str();
    }
  }
  std::cout.flush();
  return 0;
}

}  // namespace dinv::cli
