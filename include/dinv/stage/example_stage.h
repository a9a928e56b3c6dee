// The smallest complete stage (docs/architecture.md, "How to add a stage"),
// run by the driver tests on 1, 2 and 4 ranks: every unit computes some rows
// of numbers from its own random stream and writes them to /example/values.
#pragma once

#include <cstdint>

#include <ATen/core/Tensor.h>

#include "dinv/stage/driver.h"

namespace dinv::stage {

struct ExampleSettings {
  std::int64_t rows = 40;      // rows of /example/values
  std::int64_t unit_rows = 8;  // rows per unit (the last unit may hold fewer)
  std::int64_t width = 16;     // values per row
  std::uint64_t seed = 0;      // run.seed
};

// The rows of unit `unit`, float32 [its rows, width]: the same whichever rank
// computes them.
at::Tensor example_rows(const ExampleSettings& s, std::int64_t unit);

// The stage for the driver: a command runs it with
// stage::run(world, {store_path, true, config_text}, example_stage(settings)).
UnitStage example_stage(const ExampleSettings& s);

}  // namespace dinv::stage
