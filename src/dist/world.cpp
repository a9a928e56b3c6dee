#include "dinv/dist/world.h"

#include <mpi.h>

#include <cstdlib>

#include <ATen/Context.h>
#include <c10/core/impl/VirtualGuardImpl.h>

#include "dinv/core/error.h"
#include "dinv/core/log.h"

namespace dinv::dist {

void check_mpi(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, text, &len);
  throw DistError(std::string(what) + " failed: " + std::string(text, len));
}

Comm Comm::world() { return Comm(MPI_Comm_c2f(MPI_COMM_WORLD)); }
Comm Comm::this_rank_only() { return Comm(MPI_Comm_c2f(MPI_COMM_SELF)); }

int Comm::rank() const {
  int rank = 0;
  check_mpi(MPI_Comm_rank(MPI_Comm_f2c(handle_), &rank), "MPI_Comm_rank");
  return rank;
}

int Comm::size() const {
  int size = 0;
  check_mpi(MPI_Comm_size(MPI_Comm_f2c(handle_), &size), "MPI_Comm_size");
  return size;
}

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

bool World::initialised() {
  int flag = 0;
  MPI_Initialized(&flag);
  int finalized = 0;
  MPI_Finalized(&finalized);
  return flag && !finalized;
}

namespace {
// Open MPI's default shared-file-pointer component ("sm") opens a named POSIX
// semaphore keyed on the file's base name (/dev/shm/sem.OMPIO_store.h5) in
// every MPI_File_open. A rank killed inside that window (kill -9, pre-emption)
// leaves it held, and every later open of a file with that name on the node
// hangs for ever. dinv never uses shared file pointers: prefer the
// "lockedfile" component, whose fcntl locks die with their process. Read by
// MPI_Init; a user's own setting wins.
void avoid_unkillable_mpi_io_locks() { setenv("OMPI_MCA_sharedfp", "^sm", /*overwrite=*/0); }
}  // namespace

World::World(int* argc, char*** argv) {
  if (!initialised()) {
    avoid_unkillable_mpi_io_locks();
    int provided = 0;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided) != MPI_SUCCESS)
      throw DistError("MPI_Init_thread failed");
    owns_mpi_ = true;
    if (provided < MPI_THREAD_MULTIPLE) {
      MPI_Finalize();
      owns_mpi_ = false;
      throw DistError("the MPI library provides thread level " + std::to_string(provided) +
                      " but dinv needs MPI_THREAD_MULTIPLE (" + std::to_string(MPI_THREAD_MULTIPLE) +
                      "); use an MPI built with thread support (Debian's Open MPI has it)");
    }
  }
  // Errors come back as return codes, so that they become exceptions with context.
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  check_mpi(MPI_Comm_rank(MPI_COMM_WORLD, &rank_), "MPI_Comm_rank");
  check_mpi(MPI_Comm_size(MPI_COMM_WORLD, &size_), "MPI_Comm_size");

  MPI_Comm node;
  check_mpi(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node),
            "MPI_Comm_split_type");
  MPI_Comm_rank(node, &local_rank_);
  MPI_Comm_size(node, &local_size_);
  MPI_Comm_free(&node);
  int leader = local_rank_ == 0 ? 1 : 0;
  check_mpi(MPI_Allreduce(&leader, &node_count_, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD), "MPI_Allreduce");

  log::set_rank(rank_, size_);
  select_device("auto");
}

World::~World() {
  if (owns_mpi_ && initialised()) MPI_Finalize();
}

void World::select_device(const std::string& device) {
  const bool have_cuda = at::hasCUDA();
  const int gpus = have_cuda ? static_cast<int>(at::getNumGPUs()) : 0;
  const auto local_gpu = [&] { return c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(local_rank_ % gpus)); };
  if (device == "auto") {
    device_ = have_cuda ? local_gpu() : c10::Device(c10::kCPU);
  } else if (device == "cpu") {
    device_ = c10::Device(c10::kCPU);
  } else if (device.rfind("cuda", 0) == 0) {
    if (!have_cuda)
      throw ConfigError("run.device = '" + device + "' but no CUDA device is available to rank " +
                        std::to_string(rank_));
    try {
      device_ = device == "cuda" ? local_gpu() : c10::Device(device);
    } catch (const c10::Error&) {
      throw ConfigError("run.device = '" + device + "' is not a device (allowed: auto, cpu, cuda, cuda:N)");
    }
    if (device_.index() >= gpus)
      throw ConfigError("run.device = '" + device + "' but rank " + std::to_string(rank_) + "'s node has " +
                        std::to_string(gpus) + " GPU(s) (cuda:0 to cuda:" + std::to_string(gpus - 1) + ")");
  } else {
    throw ConfigError("run.device = '" + device + "' is not a device (allowed: auto, cpu, cuda, cuda:N)");
  }
  // The rank's GPU becomes its current device (as torch.cuda.set_device does),
  // so that work on "the current stream" or an unindexed CUDA device lands there.
  if (device_.is_cuda()) c10::impl::VirtualGuardImpl(c10::kCUDA).setDevice(device_);
}

std::string World::describe() const {
  return std::to_string(size_) + (size_ == 1 ? " rank" : " ranks") + " on " + std::to_string(node_count_) +
         (node_count_ == 1 ? " node" : " nodes") + ", rank 0 on " + device_.str();
}

void World::abort(int code) {
  if (initialised()) MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);
}

}  // namespace dinv::dist
