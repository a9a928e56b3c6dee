#include "dinv/stage/driver.h"

#include <vector>

#include "dinv/core/log.h"
#include "dinv/core/progress.h"
#include "dinv/core/signals.h"
#include "dinv/dist/control.h"
#include "dinv/dist/partition.h"
#include "dinv/dist/world.h"
#include "dinv/store/store.h"

namespace dinv::stage {
namespace {

// The unit's rows, then its ledger byte: a unit is marked only once its data
// is in the file. A failed write (typically a full disk) leaves it pending.
void store_unit(store::Store& st, store::UnitLedger& ledger, const UnitStage& stage, const Plan& plan,
                std::int64_t unit) {
  try {
    stage.write(st, unit);
    ledger.mark_done_independent(unit);
  } catch (const StoreError& e) {
    const auto items = stage.items_of ? stage.items_of(unit) : "";
    throw StoreError(plan.stage + ": storing " + plan.unit_noun + " " + std::to_string(unit) +
                     (items.empty() ? "" : " (" + items + ")") + " failed; it is not marked done and the finished " +
                     plan.unit_noun + "s are kept, so rerunning the same command resumes: " + e.what());
  }
}

// What this rank did in its loop.
struct Local {
  std::int64_t finished = 0, failed = 0;
  bool stopped = false;
};

Local run_loop(store::Store& st, store::UnitLedger& ledger, const UnitStage& stage, const Plan& plan,
               const std::vector<std::int64_t>& mine, Progress& progress) {
  Local local;
  for (auto unit : mine) {
    if (ledger.is_done(unit)) continue;
    if (signals::stop_requested()) {
      local.stopped = true;
      break;
    }
    UnitEnd end;
    try {
      end = stage.work(unit, progress);
    } catch (const UnitFailed& e) {
      log::error(e.what());
      ++local.failed;
      continue;
    }
    if (end == UnitEnd::stopped) {
      local.stopped = true;
      break;
    }
    store_unit(st, ledger, stage, plan, unit);
    if (stage.finished) stage.finished(unit);
    ++local.finished;
  }
  return local;
}

}  // namespace

Outcome run_units(dist::World& world, store::Store& st, const UnitStage& stage) {
  if (!stage.prepare || !stage.work || !stage.write)
    throw Error("internal: a stage for the driver needs prepare, work and write");
  const Plan plan = stage.prepare(st);
  store::UnitLedger ledger(st, plan.ledger_group, plan.units);
  // Each rank counts its own units only: the others may have marked some of
  // theirs already when this rank read the ledger.
  const auto mine = dist::units_of_rank(plan.units, world.size(), world.rank());
  std::int64_t mine_done = 0, pending = 0;
  for (auto unit : mine) {
    if (ledger.is_done(unit))
      ++mine_done;
    else
      pending += stage.progress_of ? stage.progress_of(unit) : 1;
  }
  if (stage.starting) stage.starting(ledger.done_count());
  Progress progress(plan.progress_label.empty() ? plan.stage + " (rank 0)" : plan.progress_label, pending,
                    plan.progress_counts);
  const Local local = run_loop(st, ledger, stage, plan, mine, progress);
  progress.finish();

  // A unit belongs to one rank and a finished one is never redone, so the
  // units done are those done before plus those finished now, summed over
  // the ranks: the ledger's count, without reading it back.
  const auto total = dist::sum_over_ranks(world, {mine_done, local.finished, local.failed, local.stopped ? 1 : 0});
  Outcome out;
  out.units_total = plan.units;
  out.units_done_before = total[0];
  out.units_done = total[0] + total[1];
  out.units_failed = total[2];
  out.stopped = total[3] > 0;
  return out;
}

Outcome run(dist::World& world, const StoreFile& file, const UnitStage& stage) {
  auto st = file.create ? store::Store::open_or_create(file.path, world.comm(), file.config_text)
                        : store::Store::open(file.path, world.comm(), true);
  const Outcome out = run_units(world, st, stage);
  st.close();
  return out;
}

}  // namespace dinv::stage
