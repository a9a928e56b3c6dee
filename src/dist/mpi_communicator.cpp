// MPI backend of the Communicator. Asynchronous all-reduces run on one
// communication thread, in the order they were started, so that they overlap
// with whatever the caller computes meanwhile (the backward pass) instead of
// only progressing inside MPI calls.
#include <mpi.h>

#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <thread>

#include <ATen/ATen.h>

#include "dinv/core/error.h"
#include "dinv/dist/communicator.h"
#include "dinv/dist/world.h"

namespace dinv::dist {
namespace {

MPI_Datatype mpi_type(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat:
      return MPI_FLOAT;
    case at::kDouble:
      return MPI_DOUBLE;
    case at::kInt:
      return MPI_INT32_T;
    case at::kLong:
      return MPI_INT64_T;
    case at::kByte:
      return MPI_UINT8_T;
    case at::kChar:
      return MPI_INT8_T;
    default:
      throw DistError(std::string("MPI communicator: unsupported dtype ") + c10::toString(t.scalar_type()) +
                      " (float32, float64, int8, uint8, int32, int64)");
  }
}

MPI_Op mpi_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum:
      return MPI_SUM;
    case ReduceOp::max:
      return MPI_MAX;
    case ReduceOp::min:
      return MPI_MIN;
  }
  return MPI_SUM;
}

void require_cpu(const at::Tensor& t, const char* what) {
  if (!t.defined()) throw DistError(std::string(what) + ": undefined tensor");
  if (!t.device().is_cpu())
    throw DistError(std::string(what) + ": the MPI communicator takes CPU tensors, got one on " + t.device().str());
}

// Run `fn` on a contiguous view of `t`, copying back if `t` was not contiguous.
template <typename Fn>
void with_contiguous(at::Tensor& t, Fn fn) {
  if (t.is_contiguous()) {
    fn(t);
    return;
  }
  at::Tensor c = t.contiguous();
  fn(c);
  t.copy_(c);
}

class MpiWork final : public Work {
 public:
  explicit MpiWork(std::future<void> done) : done_(std::move(done)) {}
  void wait() override {
    if (done_.valid()) done_.get();  // rethrows a DistError from the thread
  }

 private:
  std::future<void> done_;
};

class MpiCommunicator final : public Communicator {
 public:
  explicit MpiCommunicator(const World& world) {
    check_mpi(MPI_Comm_dup(MPI_Comm_f2c(world.comm().handle()), &comm_), "MPI_Comm_dup");
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
  }

  ~MpiCommunicator() override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    ready_.notify_all();
    if (worker_.joinable()) worker_.join();
    if (World::initialised()) MPI_Comm_free(&comm_);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return "mpi"; }

  void all_reduce(at::Tensor& t, ReduceOp op) override {
    require_cpu(t, "all_reduce");
    drain();  // keep collectives in start order
    with_contiguous(t, [&](at::Tensor& c) { reduce_in_place(c, op); });
  }

  std::unique_ptr<Work> all_reduce_async(at::Tensor t, ReduceOp op) override {
    require_cpu(t, "all_reduce_async");
    if (!t.is_contiguous()) throw DistError("all_reduce_async needs a contiguous tensor");
    auto task = std::make_shared<std::packaged_task<void()>>([this, t, op]() mutable { reduce_in_place(t, op); });
    auto future = task->get_future();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!worker_.joinable()) worker_ = std::thread([this] { run_queue(); });
      queue_.push_back([task] { (*task)(); });
      ++pending_;
    }
    ready_.notify_one();
    return std::make_unique<MpiWork>(std::move(future));
  }

  void broadcast(at::Tensor& t, int root) override {
    require_cpu(t, "broadcast");
    drain();
    with_contiguous(t, [&](at::Tensor& c) {
      check_mpi(MPI_Bcast(c.data_ptr(), static_cast<int>(c.numel()), mpi_type(c), root, comm_), "MPI_Bcast");
    });
  }

  at::Tensor all_gather(const at::Tensor& t) override {
    require_cpu(t, "all_gather");
    drain();
    const at::Tensor c = t.contiguous();
    auto shape = c.sizes().vec();
    shape.insert(shape.begin(), size_);
    at::Tensor out = at::empty(shape, c.options());
    check_mpi(MPI_Allgather(c.data_ptr(), static_cast<int>(c.numel()), mpi_type(c), out.data_ptr(),
                            static_cast<int>(c.numel()), mpi_type(c), comm_),
              "MPI_Allgather");
    return out;
  }

  at::Tensor gather(const at::Tensor& t, int root) override {
    require_cpu(t, "gather");
    drain();
    const at::Tensor c = t.contiguous();
    at::Tensor out;
    if (rank_ == root) {
      auto shape = c.sizes().vec();
      shape.insert(shape.begin(), size_);
      out = at::empty(shape, c.options());
    }
    check_mpi(
        MPI_Gather(c.data_ptr(), static_cast<int>(c.numel()), mpi_type(c), rank_ == root ? out.data_ptr() : nullptr,
                   static_cast<int>(c.numel()), mpi_type(c), root, comm_),
        "MPI_Gather");
    return out;
  }

  void barrier() override {
    drain();
    check_mpi(MPI_Barrier(comm_), "MPI_Barrier");
  }

 private:
  void reduce_in_place(at::Tensor& c, ReduceOp op) {
    // MPI counts are int: reduce very large tensors in slices.
    constexpr std::int64_t max_count = std::int64_t{1} << 30;
    auto* base = static_cast<char*>(c.data_ptr());
    for (std::int64_t off = 0; off < c.numel(); off += max_count) {
      const auto n = std::min(max_count, c.numel() - off);
      check_mpi(MPI_Allreduce(MPI_IN_PLACE, base + off * c.element_size(), static_cast<int>(n), mpi_type(c), mpi_op(op),
                              comm_),
                "MPI_Allreduce");
    }
  }

  void run_queue() {
    for (;;) {
      std::function<void()> job;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        ready_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
        if (queue_.empty()) return;
        job = std::move(queue_.front());
        queue_.pop_front();
      }
      job();
      {
        std::lock_guard<std::mutex> lock(mutex_);
        --pending_;
      }
      idle_.notify_all();
    }
  }

  // Wait until every asynchronous collective has finished, so that a blocking
  // collective never overtakes one that was started earlier.
  void drain() {
    std::unique_lock<std::mutex> lock(mutex_);
    idle_.wait(lock, [&] { return pending_ == 0; });
  }

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
  std::mutex mutex_;
  std::condition_variable ready_, idle_;
  std::deque<std::function<void()>> queue_;
  int pending_ = 0;
  bool stopping_ = false;
  std::thread worker_;
};

}  // namespace

std::unique_ptr<Communicator> make_mpi_communicator(const World& world) {
  return std::make_unique<MpiCommunicator>(world);
}

std::unique_ptr<Communicator> make_communicator(const World& world) {
  if (world.device().is_cuda()) return make_nccl_communicator(world);
  return make_mpi_communicator(world);
}

#ifndef DINV_WITH_NCCL
bool nccl_available() { return false; }
std::unique_ptr<Communicator> make_nccl_communicator(const World&) {
  throw DistError("this dinv was built without NCCL (LibTorch without CUDA, or the nvidia-nccl wheel not found)");
}
#endif

}  // namespace dinv::dist
