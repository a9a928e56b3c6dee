// `dinv info`: what this dinv is built on, the MPI world it runs in, the
// resolved configuration, and (with store.path) what the store holds.
#include <iostream>
#include <sstream>

#include <torch/version.h>

#include "dinv/cli/command.h"
#include "dinv/core/build_info.h"
#include "dinv/core/error.h"
#include "dinv/core/log.h"
#include "dinv/core/util.h"
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

// One line per dataset: path, dtype, shape; plus a ledger's progress.
void describe_dataset(const h5::Dataset& d, std::ostringstream& out) {
  const auto dims = d.dims();
  std::string type;
  bool readable = true;
  try {
    type = c10::toString(d.dtype());
  } catch (const StoreError&) {
    type = "(a type dinv does not read)";
    readable = false;
  }
  out << "  " << d.path() << "  " << type << c10::str(c10::IntArrayRef(dims));
  if (ends_with(d.path(), "/done")) {
    if (!readable || dims.size() != 1) {
      out << "  (not a ledger: expected uint8 [units])";
    } else {
      const at::Tensor flags = d.read_all();
      out << "  (" << flags.ne(0).sum().item<std::int64_t>() << "/" << dims[0] << " units done)";
    }
  }
  out << "\n";
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
      const h5::File& file = store.file();
      std::ostringstream out;
      out << "store " << path << "\n  schema_version " << file.int_attribute("schema_version") << ", written by dinv "
          << file.string_attribute("dinv_version") << ", created " << file.string_attribute("created") << "\n";
      for (const auto& name : file.dataset_paths()) describe_dataset(file.open_dataset(name), out);
      std::cout << out.str();
    }
  }
  std::cout.flush();
  return 0;
}

}  // namespace dinv::cli
