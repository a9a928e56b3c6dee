#include "dinv/stage/example_stage.h"

#include <memory>
#include <string>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include "dinv/core/progress.h"
#include "dinv/core/seed.h"
#include "dinv/dist/partition.h"
#include "dinv/store/store.h"

namespace dinv::stage {
namespace {

// Everything that determines the output: a store made with other settings is
// refused instead of being continued.
std::string settings_text(const ExampleSettings& s) {
  return "rows=" + std::to_string(s.rows) + " unit_rows=" + std::to_string(s.unit_rows) +
         " width=" + std::to_string(s.width) + " seed=" + std::to_string(s.seed);
}

// Allocate everything before any unit runs, unlinked until all of it is on
// disk (NewGroups), so that a run stopped here leaves no half-made group.
void create_layout(store::Store& st, const ExampleSettings& s, std::int64_t units) {
  store::NewGroups created(st);
  auto& group = created.add("/example");
  group.set_attribute("settings", settings_text(s));
  group.create_dataset("values", at::kFloat, {s.rows, s.width});
  store::UnitLedger::create(group, units);
  created.commit();
}

}  // namespace

at::Tensor example_rows(const ExampleSettings& s, std::int64_t unit) {
  // A stream per (seed, stage, unit): the numbers do not depend on the rank.
  auto gen = at::make_generator<at::CPUGeneratorImpl>(
      stream_seed(s.seed, dinv::Stage::example, {static_cast<std::uint64_t>(unit)}));
  return at::randn({dist::chunk(s.rows, s.unit_rows, unit).size(), s.width}, gen, at::kFloat);
}

UnitStage example_stage(const ExampleSettings& s) {
  const auto units = dist::chunk_count(s.rows, s.unit_rows);
  const auto rows_of = [s](std::int64_t unit) { return dist::chunk(s.rows, s.unit_rows, unit); };
  auto result = std::make_shared<at::Tensor>();  // the unit under way, from work to write
  UnitStage stage;
  stage.prepare = [s, units](store::Store& st) {
    if (!st.has("/example")) create_layout(st, s, units);
    st.require_attribute("/example", "settings", settings_text(s), "Use a new store for other settings.");
    return Plan{"example", "/example", units, "unit", "rows"};
  };
  stage.progress_of = [rows_of](std::int64_t unit) { return rows_of(unit).size(); };
  stage.work = [s, result](std::int64_t unit, Progress& progress) {
    *result = example_rows(s, unit);
    progress.advance(result->size(0));
    return UnitEnd::finished;
  };
  stage.write = [rows_of, result](store::Store& st, std::int64_t unit) {
    st.dataset("/example/values").write_rows(rows_of(unit).begin, *result, h5::Transfer::independent);
  };
  stage.items_of = [rows_of](std::int64_t unit) { return "rows " + dist::range_text(rows_of(unit)); };
  return stage;
}

}  // namespace dinv::stage
