// Test driver for the store's crash and rank-count guarantees: writes a
// dataset of `units` units of deterministic random rows, one collective round
// at a time, recording finished units in the ledger. Rerunning resumes.
//   dinv_store_writer PATH UNITS ROWS_PER_UNIT COLS [SLEEP_MS_PER_ROUND]
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <thread>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include "dinv/core/error.h"
#include "dinv/dist/partition.h"
#include "dinv/dist/world.h"
#include "dinv/store/store.h"

using namespace dinv;

int main(int argc, char** argv) {
  dist::World world(&argc, &argv);
  if (argc < 5) {
    std::cerr << "usage: dinv_store_writer PATH UNITS ROWS_PER_UNIT COLS [SLEEP_MS]\n";
    return 2;
  }
  const std::string path = argv[1];
  const std::int64_t units = std::stoll(argv[2]), rows = std::stoll(argv[3]), cols = std::stoll(argv[4]);
  const int sleep_ms = argc > 5 ? std::stoi(argv[5]) : 0;
  try {
    const std::string config = "[test]\nunits = " + std::to_string(units) + "\nrows = " + std::to_string(rows) + "\n";
    auto store = store::Store::open_or_create(path, world.comm(), config);
    if (!store.has("/test")) {
      auto g = store.create_group("/test");
      g.set_attribute("fingerprint", std::string("writer-v1"));
      store.create_dataset("/test/data", at::kFloat, {units * rows, cols});
      store.create_dataset("/test/unit", at::kLong, {units * rows});
      store::UnitLedger::create(g, units);
      store.flush();
    }
    store.require_attribute("/test", "fingerprint", "writer-v1", "test store from another writer");
    auto data = store.require_dataset("/test/data", at::kFloat, {units * rows, cols});
    auto unit_ids = store.require_dataset("/test/unit", at::kLong, {units * rows});
    store::UnitLedger ledger(store, "/test", units);

    const auto mine = dist::units_of_rank(units, world.size(), world.rank());
    const auto rounds = dist::max_units_per_rank(units, world.size());
    const char* fail_rank = std::getenv("DINV_TEST_FAIL_RANK");  // failure injection for the abort test
    for (std::int64_t r = 0; r < rounds; ++r) {
      if (fail_rank && std::atoi(fail_rank) == world.rank() && r == 1)
        throw Error("injected failure on rank " + std::to_string(world.rank()));
      std::vector<std::int64_t> finished;
      at::Tensor block, ids;
      std::int64_t first_row = 0;
      if (r < static_cast<std::int64_t>(mine.size()) && !ledger.is_done(mine[r])) {
        const auto u = mine[r];
        auto gen = at::detail::createCPUGenerator(static_cast<std::uint64_t>(1000003 * u + 17));
        block = at::randn({rows, cols}, gen, at::kFloat);
        ids = at::full({rows}, u, at::kLong);
        first_row = u * rows;
        finished.push_back(u);
      }
      data.write_rows(first_row, block, h5::Transfer::collective);
      unit_ids.write_rows(first_row, ids, h5::Transfer::collective);
      ledger.mark_done(finished);
      if (sleep_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(sleep_ms));
    }
    store.close();
    if (world.is_root()) std::cout << "store_writer: " << units << " units written to " << path << std::endl;
  } catch (const Error& e) {
    std::cerr << "store_writer: error on rank " << world.rank() << ": " << e.what() << std::endl;
    dist::World::abort(1);
  }
  return 0;
}
