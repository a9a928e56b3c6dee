#include "dinv/core/seed.h"

#include "dinv/core/config.h"

namespace dinv {

void register_run_seed(ConfigSchema& schema) {
  schema.add("run.seed", 0, "seed of every random stream of the run (each work unit derives its own)").min(0);
}

std::uint64_t run_seed(const Config& config) { return static_cast<std::uint64_t>(config.get_int("run.seed")); }

}  // namespace dinv
