// NCCL backend of the Communicator (CUDA tensors), bootstrapped from MPI the
// way nccl-tests does it: rank 0 makes the unique id, MPI broadcasts it, every
// rank joins the clique on its own GPU. Blocking collectives are enqueued on
// the current CUDA stream, so later kernels on that stream see their results
// without a host synchronisation. Asynchronous all-reduces run on a stream of
// their own, so that they overlap the kernels that follow them on the current
// stream (the rest of the backward pass); wait() orders the current stream
// after them, still without a host synchronisation.
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
    case at::kFloat: return ncclFloat32;
    case at::kDouble: return ncclFloat64;
    case at::kHalf: return ncclFloat16;
    case at::kBFloat16: return ncclBfloat16;
    case at::kInt: return ncclInt32;
    case at::kLong: return ncclInt64;
    case at::kByte: return ncclUint8;
    case at::kChar: return ncclInt8;
    default:
      throw DistError(std::string("NCCL communicator: unsupported dtype ") + c10::toString(t.scalar_type()));
  }
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum: return ncclSum;
    case ReduceOp::max: return ncclMax;
    case ReduceOp::min: return ncclMin;
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
  explicit NcclWork(at::cuda::CUDAEvent event) : event_(std::move(event)) {}
  // Make the caller's current stream wait for the collective (no host sync).
  void wait() override { event_.block(c10::cuda::getCurrentCUDAStream()); }

 private:
  at::cuda::CUDAEvent event_;
};

class NcclCommunicator final : public Communicator {
 public:
  explicit NcclCommunicator(const World& world)
      : device_(checked_device(world.device())),
        side_stream_(c10::cuda::getStreamFromPool(/*isHighPriority=*/true, device_.index())) {
    rank_ = world.rank();
    size_ = world.size();
    ncclUniqueId id;
    if (rank_ == 0) check_nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
    check_mpi(MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, world.comm()), "MPI_Bcast(ncclUniqueId)");
    c10::cuda::CUDAGuard guard(device_);
    check_nccl(ncclCommInitRank(&comm_.handle, size_, id, rank_), "ncclCommInitRank");
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return "nccl"; }

  void all_reduce(at::Tensor& t, ReduceOp op) override {
    at::Tensor c = checked(t, "all_reduce").contiguous();
    enqueue_all_reduce(c, op);
    if (!c.is_same(t)) t.copy_(c);
  }

  std::unique_ptr<Work> all_reduce_async(at::Tensor t, ReduceOp op) override {
    checked(t, "all_reduce_async");
    if (!t.is_contiguous()) throw DistError("all_reduce_async needs a contiguous tensor");
    c10::cuda::CUDAGuard guard(device_);
    at::cuda::CUDAEvent inputs_ready;  // everything queued so far that writes t
    inputs_ready.record(c10::cuda::getCurrentCUDAStream());
    inputs_ready.block(side_stream_);
    // The caching allocator must not hand t's memory out again before the
    // side stream is done with it, even if the caller drops t.
    c10::cuda::CUDACachingAllocator::recordStream(t.storage().data_ptr(), side_stream_);
    check_nccl(ncclAllReduce(t.data_ptr(), t.data_ptr(), t.numel(), nccl_type(t), nccl_op(op), comm_.handle,
                             side_stream_),
               "ncclAllReduce");
    at::cuda::CUDAEvent done;
    done.record(side_stream_);
    return std::make_unique<NcclWork>(std::move(done));
  }

  void broadcast(at::Tensor& t, int root) override {
    at::Tensor c = checked(t, "broadcast").contiguous();
    c10::cuda::CUDAGuard guard(device_);
    check_nccl(ncclBroadcast(c.data_ptr(), c.data_ptr(), c.numel(), nccl_type(c), root, comm_.handle,
                             c10::cuda::getCurrentCUDAStream()),
               "ncclBroadcast");
    if (!c.is_same(t)) t.copy_(c);
  }

  at::Tensor all_gather(const at::Tensor& t) override {
    const at::Tensor c = checked(t, "all_gather").contiguous();
    auto shape = c.sizes().vec();
    shape.insert(shape.begin(), size_);
    at::Tensor out = at::empty(shape, c.options());
    c10::cuda::CUDAGuard guard(device_);
    check_nccl(ncclAllGather(c.data_ptr(), out.data_ptr(), c.numel(), nccl_type(c), comm_.handle,
                             c10::cuda::getCurrentCUDAStream()),
               "ncclAllGather");
    return out;
  }

  at::Tensor gather(const at::Tensor& t, int root) override {
    at::Tensor all = all_gather(t);
    return rank_ == root ? all : at::Tensor();
  }

  void barrier() override {
    at::Tensor one = at::ones({1}, at::TensorOptions().device(device_).dtype(at::kFloat));
    all_reduce(one, ReduceOp::sum);
    c10::cuda::getCurrentCUDAStream().synchronize();
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

  void enqueue_all_reduce(at::Tensor& c, ReduceOp op) {
    c10::cuda::CUDAGuard guard(device_);
    check_nccl(ncclAllReduce(c.data_ptr(), c.data_ptr(), c.numel(), nccl_type(c), nccl_op(op), comm_.handle,
                             c10::cuda::getCurrentCUDAStream()),
               "ncclAllReduce");
  }

  c10::Device device_;
  c10::cuda::CUDAStream side_stream_;  // asynchronous all-reduces
  int rank_ = 0, size_ = 1;
  NcclComm comm_;
};

}  // namespace

bool nccl_available() { return true; }

std::unique_ptr<Communicator> make_nccl_communicator(const World& world) {
  return std::make_unique<NcclCommunicator>(world);
}

}  // namespace dinv::dist
