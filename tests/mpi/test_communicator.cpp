// Communicator results equal the serial computation, on any rank count.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include "dinv/dist/communicator.h"
#include "mpi/mpi_env.h"

namespace dinv::dist {
namespace {

// Rank r's contribution: integer-valued so that any summation order is exact.
at::Tensor contribution(int rank, at::ScalarType dtype) {
  return (at::arange(12, at::kDouble).reshape({3, 4}) * (rank + 1) + rank * 100).to(dtype);
}

TEST(MpiCommunicator, AllReduceEqualsSerialSum) {
  auto& w = test::world();
  auto comm = make_mpi_communicator(w);
  for (auto dtype : {at::kFloat, at::kDouble, at::kLong}) {
    at::Tensor t = contribution(w.rank(), dtype);
    comm->all_reduce(t, ReduceOp::sum);
    at::Tensor expected = at::zeros({3, 4}, dtype);
    for (int r = 0; r < w.size(); ++r) expected += contribution(r, dtype);
    EXPECT_TRUE(at::equal(t, expected)) << c10::toString(dtype);
  }
}

TEST(MpiCommunicator, MaxMinAndNonContiguous) {
  auto& w = test::world();
  auto comm = make_mpi_communicator(w);
  at::Tensor t = at::full({2, 3}, static_cast<double>(w.rank()), at::kDouble).t();  // non-contiguous view
  comm->all_reduce(t, ReduceOp::max);
  EXPECT_TRUE(at::equal(t, at::full({3, 2}, static_cast<double>(w.size() - 1), at::kDouble)));
  at::Tensor m = at::full({4}, static_cast<float>(w.rank() + 1));
  comm->all_reduce(m, ReduceOp::min);
  EXPECT_TRUE(at::equal(m, at::ones({4})));
}

TEST(MpiCommunicator, AsyncAllReducesCompleteInOrder) {
  auto& w = test::world();
  auto comm = make_mpi_communicator(w);
  std::vector<at::Tensor> buckets;
  std::vector<std::unique_ptr<Work>> work;
  for (int b = 0; b < 8; ++b) {
    buckets.push_back(at::full({1000}, static_cast<float>(w.rank() + b)));
    work.push_back(comm->all_reduce_async(buckets.back()));
  }
  at::Tensor blocking = at::ones({2});
  comm->all_reduce(blocking);  // must not overtake the queued ones
  for (auto& x : work) x->wait();
  const float rank_sum = static_cast<float>(w.size() * (w.size() - 1) / 2);
  for (int b = 0; b < 8; ++b)
    EXPECT_TRUE(at::equal(buckets[b], at::full({1000}, rank_sum + static_cast<float>(b * w.size())))) << b;
  EXPECT_TRUE(at::equal(blocking, at::full({2}, static_cast<float>(w.size()))));
}

TEST(MpiCommunicator, BroadcastGatherBarrier) {
  auto& w = test::world();
  auto comm = make_mpi_communicator(w);
  at::Tensor t = at::full({5}, static_cast<std::int64_t>(w.rank() * 7), at::kLong);
  comm->broadcast(t, w.size() - 1);
  EXPECT_TRUE(at::equal(t, at::full({5}, static_cast<std::int64_t>((w.size() - 1) * 7), at::kLong)));

  const at::Tensor mine = at::full({2}, static_cast<float>(w.rank()));
  const at::Tensor all = comm->all_gather(mine);
  ASSERT_EQ(all.size(0), w.size());
  for (int r = 0; r < w.size(); ++r) EXPECT_TRUE(at::equal(all[r], at::full({2}, static_cast<float>(r))));
  const at::Tensor at_root = comm->gather(mine, 0);
  if (w.rank() == 0)
    EXPECT_TRUE(at::equal(at_root, all));
  else
    EXPECT_FALSE(at_root.defined());
  comm->barrier();
}

TEST(NcclCommunicator, AllReduceOnGpu) {
  auto& w = test::world();
  if (!nccl_available() || !w.device().is_cuda()) GTEST_SKIP() << "no GPU on this machine: NCCL test skipped";
  auto comm = make_nccl_communicator(w);
  at::Tensor t = contribution(w.rank(), at::kFloat).to(w.device());
  comm->all_reduce(t);
  at::Tensor expected = at::zeros({3, 4});
  for (int r = 0; r < w.size(); ++r) expected += contribution(r, at::kFloat);
  EXPECT_TRUE(at::equal(t.cpu(), expected));
  at::Tensor b = at::full({3}, static_cast<float>(w.rank()), at::TensorOptions().device(w.device()));
  comm->broadcast(b, 0);
  EXPECT_TRUE(at::equal(b.cpu(), at::zeros({3})));
  // The asynchronous all-reduce runs on a side stream: it must see the write
  // queued before it, and the kernel queued after wait() must see its result.
  at::Tensor c = at::zeros({1 << 20}, at::TensorOptions().device(w.device()));
  c.fill_(static_cast<float>(w.rank() + 1));
  auto async = comm->all_reduce_async(c);
  async->wait();
  c.mul_(2);
  const float sum = static_cast<float>(w.size() * (w.size() + 1) / 2);
  EXPECT_TRUE(at::equal(c.cpu(), at::full({1 << 20}, 2 * sum)));
  comm->barrier();
}

TEST(World, RankGeometry) {
  auto& w = test::world();
  EXPECT_GE(w.size(), 1);
  EXPECT_LT(w.rank(), w.size());
  EXPECT_LT(w.local_rank(), w.local_size());
  EXPECT_GE(w.node_count(), 1);
}

}  // namespace
}  // namespace dinv::dist
