// The stage driver (stage/driver.h) running the example stage of
// docs/architecture.md on 1, 2 and 4 ranks: the same bytes on every rank
// count, a stop signal keeps finished units and a rerun does exactly the
// rest, a failing unit is counted and left pending, a failed write names the
// unit.
#include <gtest/gtest.h>

#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstring>
#include <set>

#include <ATen/ATen.h>

#include "dinv/core/error.h"
#include "dinv/core/signals.h"
#include "dinv/dist/control.h"
#include "dinv/dist/partition.h"
#include "dinv/stage/example_stage.h"
#include "dinv/store/store.h"
#include "mpi/mpi_env.h"

namespace dinv::stage {
namespace {

// 6 units, the last one of 4 rows: blocks of 6, 3+3, 2+2+1+1 units.
ExampleSettings settings() { return {/*rows=*/44, /*unit_rows=*/8, /*width=*/5, /*seed=*/7}; }
constexpr std::int64_t kUnits = 6;

// A fresh store path agreed by all ranks.
std::string fresh_store(const std::string& name) {
  auto& w = test::world();
  const int pid = dist::broadcast_from_root(w, static_cast<int>(getpid()));
  const auto path = ::testing::TempDir() + "/dinv_driver_" + name + "_" + std::to_string(pid) + "_np" +
                    std::to_string(w.size()) + ".h5";
  if (w.is_root()) std::remove(path.c_str());
  dist::any_rank(w, false);  // the old file is gone before any rank opens it
  return path;
}

Outcome run_on(const std::string& path, const UnitStage& stage) {
  return run(test::world(), {path, true, "[example]\n"}, stage);
}

// What the store holds: /example/values and the ledger.
struct Stored {
  at::Tensor values, done;
};

Stored read_store(const std::string& path) {
  auto st = store::Store::open(path, test::world().comm(), false);
  Stored s{st.dataset("/example/values").read_all(), st.dataset("/example/done").read_all()};
  st.close();
  return s;
}

// The rows of an uninterrupted run, computed without the driver or a store.
at::Tensor expected_values() {
  std::vector<at::Tensor> units;
  for (std::int64_t u = 0; u < kUnits; ++u) units.push_back(example_rows(settings(), u));
  return at::cat(units);
}

bool same_bytes(const at::Tensor& a, const at::Tensor& b) {
  return a.sizes() == b.sizes() && a.scalar_type() == b.scalar_type() &&
         std::memcmp(a.contiguous().data_ptr(), b.contiguous().data_ptr(), a.nbytes()) == 0;
}

// The example stage, recording which units this rank worked on.
UnitStage counting(std::set<std::int64_t>* worked) {
  UnitStage stage = example_stage(settings());
  stage.work = [inner = stage.work, worked](std::int64_t unit, Progress& progress) {
    worked->insert(unit);
    return inner(unit, progress);
  };
  return stage;
}

std::int64_t units_worked_on_all_ranks(const std::set<std::int64_t>& worked) {
  return dist::sum_over_ranks(test::world(), static_cast<std::int64_t>(worked.size()));
}

TEST(StageDriver, ExampleWritesTheSameBytesOnAnyRankCount) {
  const auto path = fresh_store("bytes");
  const Outcome out = run_on(path, example_stage(settings()));
  EXPECT_EQ(out.units_total, kUnits);
  EXPECT_EQ(out.units_done_before, 0);
  EXPECT_EQ(out.units_done, kUnits);
  EXPECT_EQ(out.units_failed, 0);
  EXPECT_FALSE(out.stopped);
  const Stored stored = read_store(path);
  EXPECT_TRUE(same_bytes(stored.values, expected_values()));
  EXPECT_TRUE(stored.done.eq(1).all().item<bool>());

  // A finished store: a rerun does nothing.
  std::set<std::int64_t> worked;
  const Outcome again = run_on(path, counting(&worked));
  EXPECT_EQ(units_worked_on_all_ranks(worked), 0);
  EXPECT_EQ(again.units_done_before, kUnits);
  EXPECT_EQ(again.units_done, kUnits);
}

// Rank 0 is stopped by a signal, the other ranks finish their blocks; the
// rerun does exactly what is left and ends with the uninterrupted bytes.
void check_stop_and_resume(const std::string& name, bool stop_inside_unit) {
  auto& w = test::world();
  const auto path = fresh_store(name);
  const auto first_unit = dist::block_of(kUnits, w.size(), 0).begin;
  UnitStage stage = example_stage(settings());
  stage.work = [inner = stage.work, first_unit, stop_inside_unit, &w](std::int64_t unit, Progress& progress) {
    if (!w.is_root() || unit == first_unit) return inner(unit, progress);
    if (!stop_inside_unit) ADD_FAILURE() << "rank 0 started unit " << unit << " after the stop signal";
    // A unit that notices the signal mid-way saves its state and says so.
    return UnitEnd::stopped;
  };
  if (!stop_inside_unit)
    stage.finished = [first_unit, &w](std::int64_t unit) {
      if (w.is_root() && unit == first_unit) std::raise(SIGTERM);  // between two units
    };
  signals::reset_for_tests();
  signals::install_stop_handlers();
  const Outcome first = run_on(path, stage);
  signals::reset_for_tests();

  // Rank 0 finished its first unit only; the others finished theirs.
  const auto rank0_units = dist::block_of(kUnits, w.size(), 0).size();
  EXPECT_TRUE(first.stopped) << "every rank learns that rank 0 stopped";
  EXPECT_EQ(first.units_done, kUnits - (rank0_units - 1));
  const Stored stopped = read_store(path);
  EXPECT_EQ(stopped.done.sum().item<std::int64_t>(), first.units_done);
  EXPECT_EQ(stopped.done[first_unit].item<int>(), 1);

  std::set<std::int64_t> worked;
  const Outcome second = run_on(path, counting(&worked));
  EXPECT_EQ(units_worked_on_all_ranks(worked), rank0_units - 1) << "the rerun does exactly the rest";
  for (auto unit : worked) EXPECT_EQ(stopped.done[unit].item<int>(), 0) << "unit " << unit << " was done twice";
  EXPECT_FALSE(second.stopped);
  EXPECT_EQ(second.units_done_before, first.units_done);
  EXPECT_EQ(second.units_done, kUnits);
  EXPECT_TRUE(same_bytes(read_store(path).values, expected_values()));
}

TEST(StageDriver, StopBetweenUnitsKeepsFinishedOnesAndRerunCompletesTheRest) {
  check_stop_and_resume("stop_between", false);
}

TEST(StageDriver, StopInsideAUnitLeavesItPendingAndRerunCompletesTheRest) {
  check_stop_and_resume("stop_inside", true);
}

TEST(StageDriver, FailingUnitIsCountedOnEveryRankAndLeftPending) {
  const auto path = fresh_store("failing");
  constexpr std::int64_t bad_unit = 2;
  UnitStage stage = example_stage(settings());
  stage.work = [inner = stage.work](std::int64_t unit, Progress& progress) {
    if (unit == bad_unit) throw UnitFailed("example unit 2: loss became nan");
    return inner(unit, progress);
  };
  const Outcome out = run_on(path, stage);
  EXPECT_EQ(out.units_failed, 1);
  EXPECT_EQ(out.units_done, kUnits - 1);
  EXPECT_FALSE(out.stopped);
  const Stored stored = read_store(path);
  EXPECT_EQ(stored.done[bad_unit].item<int>(), 0);
  EXPECT_EQ(stored.done.sum().item<std::int64_t>(), kUnits - 1);

  std::set<std::int64_t> worked;
  const Outcome rerun = run_on(path, counting(&worked));
  EXPECT_EQ(units_worked_on_all_ranks(worked), 1);
  EXPECT_EQ(rerun.units_failed, 0);
  EXPECT_EQ(rerun.units_done, kUnits);
  EXPECT_TRUE(same_bytes(read_store(path).values, expected_values()));
}

// One rank only: a rank whose write fails leaves the others in a collective
// (the job aborts in main), which a test process cannot do.
TEST(StageDriver, FailedWriteNamesTheUnitAndLeavesItPending) {
  auto& w = test::world();
  if (w.size() != 1) GTEST_SKIP() << "a failed write ends a multi-rank job by MPI_Abort";
  const auto path = fresh_store("write_fails");
  UnitStage stage = example_stage(settings());
  stage.write = [inner = stage.write](store::Store& st, std::int64_t unit) {
    if (unit == 1) throw StoreError("cannot write rows [8, 16) of /example/values: No space left on device");
    inner(st, unit);
  };
  try {
    run_on(path, stage);
    FAIL() << "a failed write did not end the stage";
  } catch (const StoreError& e) {
    EXPECT_STREQ(e.what(),
                 "example: storing unit 1 (rows [8, 16)) failed; it is not marked done and the finished units are "
                 "kept, so rerunning the same command resumes: cannot write rows [8, 16) of /example/values: No "
                 "space left on device");
  }
  const Stored stored = read_store(path);
  EXPECT_EQ(stored.done[0].item<int>(), 1);
  EXPECT_EQ(stored.done[1].item<int>(), 0);
  EXPECT_EQ(run_on(path, example_stage(settings())).units_done_before, 1);
  EXPECT_TRUE(same_bytes(read_store(path).values, expected_values()));
}

TEST(StageDriver, StoreOfOtherSettingsIsRefusedNamingThem) {
  const auto path = fresh_store("settings");
  run_on(path, example_stage(settings()));
  ExampleSettings other = settings();
  other.seed = 8;
  try {
    run_on(path, example_stage(other));
    FAIL() << "continued a store made with another seed";
  } catch (const StoreError& e) {
    EXPECT_NE(std::string(e.what()).find("seed=8"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace dinv::stage
