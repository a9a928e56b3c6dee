// Collectives behind one small interface (docs/architecture.md, "Collectives"): an MPI backend
// for CPU tensors and an NCCL backend for CUDA tensors (bootstrapped from MPI).
// Every call is collective: all ranks call it in the same order.
#pragma once

#include <memory>
#include <string>

#include <ATen/core/Tensor.h>

namespace dinv::dist {

class World;

enum class ReduceOp { sum, max, min };

// A collective under way; wait() returns when its result is in the tensor.
class Work {
 public:
  virtual ~Work() = default;
  virtual void wait() = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string backend() const = 0;

  // In place: every rank ends with the reduction of all ranks' tensors.
  virtual void all_reduce(at::Tensor& tensor, ReduceOp op = ReduceOp::sum) = 0;
  // Starts the all-reduce and returns at once; collectives complete in the
  // order they were started. The tensor must stay untouched until wait().
  virtual std::unique_ptr<Work> all_reduce_async(at::Tensor tensor, ReduceOp op = ReduceOp::sum) = 0;
  // In place: every rank ends with root's tensor (same shape and dtype everywhere).
  virtual void broadcast(at::Tensor& tensor, int root) = 0;
  // Concatenation along a new first dimension of every rank's tensor (same
  // shape on every rank): [size, ...] on every rank.
  virtual at::Tensor all_gather(const at::Tensor& tensor) = 0;
  // As all_gather, but only root receives the result (others get an undefined tensor).
  virtual at::Tensor gather(const at::Tensor& tensor, int root) = 0;
  virtual void barrier() = 0;
};

// MPI backend over a duplicate of the world communicator (CPU tensors).
std::unique_ptr<Communicator> make_mpi_communicator(const World& world);
// NCCL backend for CUDA tensors; throws DistError when dinv was built without
// NCCL or no GPU is present.
std::unique_ptr<Communicator> make_nccl_communicator(const World& world);
// The natural backend for the rank's device: NCCL on CUDA, MPI on CPU.
std::unique_ptr<Communicator> make_communicator(const World& world);

// True when this build has the NCCL backend.
bool nccl_available();

}  // namespace dinv::dist
