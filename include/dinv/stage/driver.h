// The stage driver (docs/architecture.md, "How to add a stage"): the one loop
// that every stage working in units runs. A stage cuts its work into global
// units whose boundaries depend only on the problem (dist/partition.h); the
// driver gives each rank its contiguous block of them and owns everything
// around a unit:
//
//   open the store -> the stage's plan (layout created or checked) -> the
//   ledger -> for each unit of this rank: skip it when finished, stop on a
//   signal, the stage's work, the stage's writes, mark it done -> progress
//   and ETA -> the agreement of all ranks (did any stop, how many units
//   failed, how many are done).
//
// The stage supplies only its plan, one unit's work and that unit's writes
// (a UnitStage). Since a unit's result depends only on the unit, any rank
// count and any number of interruptions write the same bytes.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "dinv/core/error.h"

namespace dinv {
class Progress;
}
namespace dinv::dist {
class World;
}
namespace dinv::store {
class Store;
}

namespace dinv::stage {

// What the stage's units are, decided once the store is open.
struct Plan {
  std::string stage;                      // "embed": starts log and error messages
  std::string ledger_group;               // the group whose `done` dataset records finished units
  std::int64_t units = 0;                 // global units
  std::string unit_noun = "unit";         // in messages: "unit", "chunk", "shard"
  std::string progress_counts = "units";  // what progress counts: "steps", "images"
  std::string progress_label;             // empty: "<stage> (rank 0)"
};

// How a unit's work ended (a failed unit throws UnitFailed instead).
enum class UnitEnd {
  finished,  // its result waits for write()
  stopped,   // a stop signal arrived inside the unit; it saved what it needs to resume
};

// A unit whose work cannot succeed (say, its loss became NaN): the driver logs
// the message, counts the unit as failed, leaves it unmarked and goes on with
// the next unit. Any other exception ends the stage.
class UnitFailed : public Error {
 public:
  using Error::Error;
};

// What a stage supplies to the driver: prepare, work and write are required.
// The callables usually capture the stage's inputs and the unit under way (work
// leaves its result where write finds it).
struct UnitStage {
  // Collective: create the stage's groups, attributes, datasets and ledger
  // (store::UnitLedger::create) in the store when they are missing, check
  // them otherwise, and say what the units are.
  std::function<Plan(store::Store&)> prepare;
  // The unit's computation; advances the progress as it goes.
  std::function<UnitEnd(std::int64_t unit, Progress&)> work;
  // Write the result of the last work(unit) into the store (rows of datasets
  // that prepare allocated; independent I/O). The driver marks the unit done
  // once this returns.
  std::function<void(store::Store&, std::int64_t unit)> write;

  // How much a unit adds to the progress (in Plan::progress_counts); 1 when unset.
  std::function<std::int64_t(std::int64_t unit)> progress_of;
  // After the ledger is read, before the first unit (e.g. log what this run will do).
  std::function<void(std::int64_t units_done)> starting;
  // After the unit is marked done (e.g. remove its checkpoint).
  std::function<void(std::int64_t unit)> finished;
  // The unit's items in messages, e.g. "samples [18, 24)".
  std::function<std::string(std::int64_t unit)> items_of;
};

// The same on every rank after the agreement.
struct Outcome {
  std::int64_t units_total = 0;
  std::int64_t units_done_before = 0;  // finished when this run started
  std::int64_t units_done = 0;         // finished when it ended
  std::int64_t units_failed = 0;       // failed in this run (UnitFailed), on all ranks
  bool stopped = false;                // a stop signal stopped at least one rank
};

// Collective: run this rank's units of `stage` on an open store.
Outcome run_units(dist::World& world, store::Store& store, const UnitStage& stage);

// Where the stage's store is.
struct StoreFile {
  std::string path;
  bool create = false;      // create it when missing (else it must exist)
  std::string config_text;  // recorded in a store this creates
};

// Collective: open the store (writable), run_units, close it.
Outcome run(dist::World& world, const StoreFile& file, const UnitStage& stage);

}  // namespace dinv::stage
