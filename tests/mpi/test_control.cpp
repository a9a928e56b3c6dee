// The control collectives of dist/control.h on 1, 2 and 4 ranks: any stopped
// rank, summed counts, rank 0's status and error, gathered blocks.
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "dinv/core/error.h"
#include "dinv/dist/control.h"
#include "mpi/mpi_env.h"

namespace dinv::dist {
namespace {

TEST(Control, AnyRankIsALogicalOr) {
  auto& w = test::world();
  EXPECT_FALSE(any_rank(w, false));
  EXPECT_TRUE(any_rank(w, w.rank() == w.size() - 1));
  EXPECT_TRUE(any_rank(w, true));
}

TEST(Control, SumOverRanksAddsElementWise) {
  auto& w = test::world();
  const std::int64_t n = w.size();
  const auto sums = sum_over_ranks(w, std::vector<std::int64_t>{w.rank(), 1, std::int64_t{1} << 40});
  EXPECT_EQ(sums, (std::vector<std::int64_t>{n * (n - 1) / 2, n, n << 40}));
  EXPECT_EQ(sum_over_ranks(w, std::int64_t{w.rank() + 1}), n * (n + 1) / 2);
}

TEST(Control, BroadcastGivesRankZerosValue) {
  auto& w = test::world();
  EXPECT_EQ(broadcast_from_root(w, w.is_root() ? 42 : w.rank()), 42);
}

TEST(Control, AllGatherConcatenatesBlocksInRankOrder) {
  auto& w = test::world();
  std::vector<float> floats;
  std::vector<std::int64_t> ints;
  for (int j = 0; j < 3; ++j) {
    floats.push_back(static_cast<float>(w.rank()) + 0.25f * static_cast<float>(j));
    ints.push_back((std::int64_t{w.rank()} << 33) + j);
  }
  const auto all_floats = all_gather(w, floats);
  const auto all_ints = all_gather(w, ints);
  ASSERT_EQ(all_floats.size(), static_cast<std::size_t>(3 * w.size()));
  ASSERT_EQ(all_ints.size(), static_cast<std::size_t>(3 * w.size()));
  for (int r = 0; r < w.size(); ++r)
    for (int j = 0; j < 3; ++j) {
      EXPECT_EQ(all_floats[static_cast<std::size_t>(3 * r + j)], static_cast<float>(r) + 0.25f * static_cast<float>(j));
      EXPECT_EQ(all_ints[static_cast<std::size_t>(3 * r + j)], (std::int64_t{r} << 33) + j);
    }
}

TEST(Control, NoRootFailureThrowsNothing) {
  auto& w = test::world();
  EXPECT_NO_THROW(rethrow_root_failure(w, nullptr));
  // The other ranks' failures are not rank 0's: ignored.
  const auto own = w.is_root() ? nullptr : std::make_exception_ptr(IoError("only on rank " + std::to_string(w.rank())));
  EXPECT_NO_THROW(rethrow_root_failure(w, own));
}

TEST(Control, RootFailureIsThrownOnEveryRankWithItsMessage) {
  auto& w = test::world();
  const std::string message = "cannot write 'out/x.png': No space left on device";
  const auto failure = w.is_root() ? std::make_exception_ptr(IoError(message)) : nullptr;
  try {
    rethrow_root_failure(w, failure);
    FAIL() << "rank " << w.rank() << " did not throw";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), message);
    EXPECT_EQ(e.exit_code(), ExitCode::failure);
    if (w.is_root()) EXPECT_NE(dynamic_cast<const IoError*>(&e), nullptr) << "rank 0 rethrows its own exception";
  }
}

TEST(Control, RootConfigErrorStaysAConfigErrorEverywhere) {
  auto& w = test::world();
  const auto failure = w.is_root() ? std::make_exception_ptr(ConfigError("generate.preview: bad value")) : nullptr;
  try {
    rethrow_root_failure(w, failure);
    FAIL() << "rank " << w.rank() << " did not throw";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()), "generate.preview: bad value");
    EXPECT_EQ(e.exit_code(), ExitCode::usage);
  }
}

}  // namespace
}  // namespace dinv::dist
