// The MPI world of one dinv job (RAII): MPI is initialised with the thread
// support dinv needs and finalised when the World goes away. It knows this
// rank's place (rank, size, rank within its node, node count) and the torch
// device the rank computes on (one GPU per local rank when CUDA is available).
#pragma once

#include <string>

#include <c10/core/Device.h>

#include "dinv/dist/comm.h"

namespace dinv::dist {

class World {
 public:
  // Initialises MPI (MPI_THREAD_MULTIPLE: gradient all-reduces are started from
  // autograd hooks while the main thread runs the backward pass) unless it is
  // already initialised, e.g. by a test harness.
  World(int* argc, char*** argv);
  ~World();
  World(const World&) = delete;
  World& operator=(const World&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  int local_rank() const { return local_rank_; }
  int local_size() const { return local_size_; }
  int node_count() const { return node_count_; }
  bool is_root() const { return rank_ == 0; }
  Comm comm() const { return Comm::world(); }
  c10::Device device() const { return device_; }
  std::string describe() const;  // "4 ranks on 1 node, rank 0 on cpu"

  // Use `device` instead of the automatic choice ("cpu", "cuda", "cuda:1", "auto").
  void select_device(const std::string& device);

  // Abort every rank with `code` (after the caller has printed its message).
  [[noreturn]] static void abort(int code);
  static bool initialised();

 private:
  int rank_ = 0, size_ = 1, local_rank_ = 0, local_size_ = 1, node_count_ = 1;
  bool owns_mpi_ = false;
  c10::Device device_{c10::kCPU};
};

// Throw a DistError with MPI's own message when `rc` (an MPI return code) is
// not MPI_SUCCESS.
void check_mpi(int rc, const char* what);

// "Open MPI v4.1.4 (MPI 3.1)": the MPI library's first line and the standard version.
std::string mpi_library_version();

}  // namespace dinv::dist
