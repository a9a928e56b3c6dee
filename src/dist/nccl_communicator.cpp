// NCCL backend of the Communicator (CUDA tensors), bootstrapped from MPI the
// way nccl-tests does it: rank 0 makes the unique id, MPI broadcasts it, every
// rank joins the clique on its own GPU.
//
// Every collective runs on the communicator's own stream, in the order it was
// called: NCCL kernels of one communicator on several streams may be scheduled
// in different orders on different GPUs and deadlock (SyncBN's all-reduces in
// backward interleave with the gradient buckets'). Events order that stream
// after the work already queued on the caller's current stream, and the
// caller's stream after the collective, so no call waits on the host; an
// asynchronous all-reduce overlaps the kernels queued after it (the rest of
// the backward pass) until its wait().
#include <mpi.h>
#include <nccl.h>

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "dinv/core/error.h"
#include "dinv/dist/communicator.h"
#include "dinv/dist/world.h"

namespace dinv::dist {
namespace {

void check_nccl(ncclResult_t rc, const char* what) {
  if (rc == ncclSuccess) return;
  throw DistError(std::string(what) + " failed: " + ncclGetErrorString(rc));
}

ncclDataType_t nccl_type(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat:
      return ncclFloat32;
    case at::kDouble:
      return ncclFloat64;
    case at::kHalf:
      return ncclFloat16;
    case at::kBFloat16:
      return ncclBfloat16;
    case at::kInt:
      return ncclInt32;
    case at::kLong:
      return ncclInt64;
    case at::kByte:
      return ncclUint8;
    case at::kChar:
      return ncclInt8;
    default:
      throw DistError(std::string("NCCL communicator: unsupported dtype ") + c10::toString(t.scalar_type()));
  }
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum:
      return ncclSum;
    case ReduceOp::max:
      return ncclMax;
    case ReduceOp::min:
      return ncclMin;
  }
  return ncclSum;
}

// RAII for the NCCL communicator handle.
struct NcclComm {
  ncclComm_t handle = nullptr;
  ~NcclComm() {
    if (handle) ncclCommDestroy(handle);
  }
};

class NcclWork final : public Work {
 public:
  NcclWork(at::cuda::CUDAEvent event, c10::DeviceIndex device) : event_(std::move(event)), device_(device) {}
  // Make the caller's current stream wait for the collective (no host sync).
  void wait() override { event_.block(c10::cuda::getCurrentCUDAStream(device_)); }

 private:
  at::cuda::CUDAEvent event_;
  c10::DeviceIndex device_;
};

class NcclCommunicator final : public Communicator {
 public:
  explicit NcclCommunicator(const World& world)
      : device_(checked_device(world.device())),
        comm_stream_(c10::cuda::getStreamFromPool(/*isHighPriority=*/true, device_.index())) {
    rank_ = world.rank();
    size_ = world.size();
    // NCCL refuses two ranks on one GPU ("invalid usage"): say why instead.
    if (world.local_size() > static_cast<int>(at::getNumGPUs()))
      throw DistError(std::to_string(world.local_size()) + " ranks share the " + std::to_string(at::getNumGPUs()) +
                      " GPU(s) of this node, and NCCL needs one GPU per rank: start at most " +
                      std::to_string(at::getNumGPUs()) + " ranks per node, or set run.device = cpu");
    ncclUniqueId id;
    if (rank_ == 0) check_nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
    check_mpi(MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, MPI_Comm_f2c(world.comm().handle())), "MPI_Bcast(ncclUniqueId)");
    c10::cuda::CUDAGuard guard(device_);
    check_nccl(ncclCommInitRank(&comm_.handle, size_, id, rank_), "ncclCommInitRank");
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return "nccl"; }

  void all_reduce(at::Tensor& t, ReduceOp op) override {
    at::Tensor c = checked(t, "all_reduce").contiguous();
    collective({c}, [&](cudaStream_t stream) {
      check_nccl(ncclAllReduce(c.data_ptr(), c.data_ptr(), c.numel(), nccl_type(c), nccl_op(op), comm_.handle, stream),
                 "ncclAllReduce");
    }).block(current_stream());
    if (!c.is_same(t)) t.copy_(c);
  }

  std::unique_ptr<Work> all_reduce_async(at::Tensor t, ReduceOp op) override {
    checked(t, "all_reduce_async");
    if (!t.is_contiguous()) throw DistError("all_reduce_async needs a contiguous tensor");
    return std::make_unique<NcclWork>(collective({t},
                                                 [&](cudaStream_t stream) {
                                                   check_nccl(
                                                       ncclAllReduce(t.data_ptr(), t.data_ptr(), t.numel(),
                                                                     nccl_type(t), nccl_op(op), comm_.handle, stream),
                                                       "ncclAllReduce");
                                                 }),
                                      device_.index());
  }

  void broadcast(at::Tensor& t, int root) override {
    at::Tensor c = checked(t, "broadcast").contiguous();
    collective({c}, [&](cudaStream_t stream) {
      check_nccl(ncclBroadcast(c.data_ptr(), c.data_ptr(), c.numel(), nccl_type(c), root, comm_.handle, stream),
                 "ncclBroadcast");
    }).block(current_stream());
    if (!c.is_same(t)) t.copy_(c);
  }

  at::Tensor all_gather(const at::Tensor& t) override {
    const at::Tensor c = checked(t, "all_gather").contiguous();
    auto shape = c.sizes().vec();
    shape.insert(shape.begin(), size_);
    at::Tensor out = at::empty(shape, c.options());
    collective({c, out}, [&](cudaStream_t stream) {
      check_nccl(ncclAllGather(c.data_ptr(), out.data_ptr(), c.numel(), nccl_type(c), comm_.handle, stream),
                 "ncclAllGather");
    }).block(current_stream());
    return out;
  }

  at::Tensor gather(const at::Tensor& t, int root) override {
    at::Tensor all = all_gather(t);
    return rank_ == root ? all : at::Tensor();
  }

  void barrier() override {
    at::Tensor one = at::ones({1}, at::TensorOptions().device(device_).dtype(at::kFloat));
    all_reduce(one, ReduceOp::sum);
    current_stream().synchronize();
  }

 private:
  static c10::Device checked_device(c10::Device device) {
    if (!device.is_cuda()) throw DistError("NCCL communicator needs a CUDA device, rank is on " + device.str());
    return device;
  }

  const at::Tensor& checked(const at::Tensor& t, const char* what) const {
    if (!t.defined()) throw DistError(std::string(what) + ": undefined tensor");
    if (t.device() != device_)
      throw DistError(std::string(what) + ": the NCCL communicator of this rank works on " + device_.str() +
                      ", got a tensor on " + t.device().str());
    return t;
  }

  // The caller's stream on this rank's GPU (whatever the thread's current device).
  c10::cuda::CUDAStream current_stream() const { return c10::cuda::getCurrentCUDAStream(device_.index()); }

  // Queues `enqueue` on the communication stream after the work already
  // queued on the current stream; returns the event that marks its end.
  template <class Enqueue>
  at::cuda::CUDAEvent collective(std::initializer_list<at::Tensor> tensors, Enqueue enqueue) {
    c10::cuda::CUDAGuard guard(device_);
    at::cuda::CUDAEvent inputs_ready;
    inputs_ready.record(current_stream());
    inputs_ready.block(comm_stream_);
    // The caching allocator must not hand these blocks out again before the
    // communication stream is done with them, even if the caller drops them.
    for (const at::Tensor& t : tensors)
      c10::cuda::CUDACachingAllocator::recordStream(t.storage().data_ptr(), comm_stream_);
    enqueue(comm_stream_.stream());
    at::cuda::CUDAEvent done;
    done.record(comm_stream_);
    return done;
  }

  c10::Device device_;
  c10::cuda::CUDAStream comm_stream_;
  int rank_ = 0, size_ = 1;
  NcclComm comm_;
};

}  // namespace

bool nccl_available() { return true; }

std::unique_ptr<Communicator> make_nccl_communicator(const World& world) {
  return std::make_unique<NcclCommunicator>(world);
}

}  // namespace dinv::dist
