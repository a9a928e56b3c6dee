// Store behaviour on 1, 2 and 4 ranks: schema and fingerprint checks, datasets
// of the wrong shape, collective hyperslab writes read back exactly.
#include <mpi.h>

#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>

#include <ATen/ATen.h>

#include "dinv/core/error.h"
#include "dinv/dist/communicator.h"
#include "dinv/store/store.h"
#include "mpi/mpi_env.h"

namespace dinv::store {
namespace {

// A per-test path agreed by all ranks.
std::string shared_path(const std::string& name) {
  auto& w = test::world();
  std::string dir = ::testing::TempDir();
  int pid = static_cast<int>(getpid());
  MPI_Bcast(&pid, 1, MPI_INT, 0, MPI_COMM_WORLD);
  return dir + "/dinv_store_" + name + "_" + std::to_string(pid) + "_np" + std::to_string(w.size()) + ".h5";
}

TEST(Store, CollectiveRowsRoundTrip) {
  auto& w = test::world();
  const auto path = shared_path("rows");
  {
    auto s = Store::open_or_create(path, w.comm(), "[t]\n");
    s.create_group("/g");
    auto d = s.create_dataset("/g/x", at::kFloat, {w.size() * 3, 2});
    at::Tensor mine = at::full({3, 2}, static_cast<float>(w.rank()));
    d.write_rows(w.rank() * 3, mine, h5::Transfer::collective);
    s.close();
  }
  auto s = Store::open(path, w.comm(), false);
  const at::Tensor all = s.dataset("/g/x").read_all();
  for (int r = 0; r < w.size(); ++r)
    EXPECT_TRUE(at::equal(all.narrow(0, r * 3, 3), at::full({3, 2}, static_cast<float>(r))));
  s.close();
  MPI_Barrier(MPI_COMM_WORLD);
  if (w.is_root()) std::remove(path.c_str());
}

TEST(Store, WrongSchemaVersionIsAClearError) {
  auto& w = test::world();
  const auto path = shared_path("schema");
  {
    auto s = Store::open_or_create(path, w.comm(), "");
    h5::Group root = s.file().open_group("/");
    root.set_attribute("schema_version", std::int64_t{999});
    s.close();
  }
  try {
    Store::open(path, w.comm(), false);
    FAIL() << "opened a store of another schema";
  } catch (const StoreError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("has schema version 999"), std::string::npos) << msg;
    EXPECT_NE(msg.find("reads schema version 1"), std::string::npos) << msg;
  }
  MPI_Barrier(MPI_COMM_WORLD);
  if (w.is_root()) std::remove(path.c_str());
}

TEST(Store, FingerprintAndShapeMismatchesNameBothValues) {
  auto& w = test::world();
  const auto path = shared_path("fp");
  auto s = Store::open_or_create(path, w.comm(), "");
  auto g = s.create_group("/embeddings");
  g.set_attribute("model_fingerprint", std::string("sha-A"));
  s.create_dataset("/embeddings/data", at::kFloat, {4, 5});
  try {
    s.require_attribute("/embeddings", "model_fingerprint", "sha-B", "Use a new store for another model.");
    FAIL();
  } catch (const StoreError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("model_fingerprint is 'sha-A' but this run has 'sha-B'"), std::string::npos) << msg;
  }
  EXPECT_THROW(s.require_dataset("/embeddings/data", at::kFloat, {4, 6}), StoreError);
  EXPECT_NO_THROW(s.require_dataset("/embeddings/data", at::kFloat, {4, 5}));
  try {
    s.dataset("/samples/x/images");
    FAIL();
  } catch (const StoreError& e) {
    EXPECT_NE(std::string(e.what()).find("has no dataset '/samples/x/images'"), std::string::npos);
  }
  s.close();
  MPI_Barrier(MPI_COMM_WORLD);
  if (w.is_root()) std::remove(path.c_str());
}

TEST(Store, NotAStoreIsAClearError) {
  auto& w = test::world();
  const auto path = shared_path("junk");
  if (w.is_root()) {
    FILE* f = std::fopen(path.c_str(), "w");
    std::fputs("not hdf5", f);
    std::fclose(f);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  try {
    Store::open(path, w.comm(), false);
    FAIL();
  } catch (const StoreError& e) {
    EXPECT_NE(std::string(e.what()).find("is not a readable dinv store"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("HDF5 error stack"), std::string::npos) << e.what();
  }
  MPI_Barrier(MPI_COMM_WORLD);
  if (w.is_root()) std::remove(path.c_str());
}

// A file open on one process (a serial read, or a file of MPI_COMM_SELF) is
// closed while an error unwinds, so the same process can create it again; a
// file shared by several ranks is left to the abort (closing is collective).
TEST(Store, LocalFileClosesWhenAnErrorUnwinds) {
  auto& w = test::world();
  const auto path = shared_path("unwind") + ".r" + std::to_string(w.rank());
  h5::File::create(path, dist::Comm::this_rank_only()).close();
  for (int round = 0; round < 2; ++round) {
    try {
      auto serial = h5::File::open_serial(path);
      auto local = h5::File::open(path, dist::Comm::this_rank_only(), false);
      throw StoreError("a reader's error");
    } catch (const StoreError&) {
    }
    // Still open, H5Fcreate would refuse: "file is already open".
    EXPECT_NO_THROW(h5::File::create(path, dist::Comm::this_rank_only()).close()) << "round " << round;
  }
  std::remove(path.c_str());
}

TEST(NewGroups, NothingIsLinkedBeforeCommitAndAllAfter) {
  auto& w = test::world();
  const auto path = shared_path("new_groups");
  {
    auto s = Store::open_or_create(path, w.comm(), "");
    NewGroups created(s);
    auto& a = created.add("/a");
    a.set_attribute("settings", std::string("x=1"));
    a.create_dataset("values", at::kFloat, {4, 2}).write_rows(0, at::ones({4, 2}), h5::Transfer::collective);
    UnitLedger::create(a, 3);
    auto& b = created.add("/samples/b");  // a second group, its reference still valid
    UnitLedger::create(b, 1);
    s.flush();
    EXPECT_FALSE(s.has("/a"));
    EXPECT_FALSE(s.has("/samples/b"));
    EXPECT_EQ(s.group("/samples").link_names(), std::vector<std::string>{});
    created.commit();
    EXPECT_FALSE(half_created(s, "/a", {"settings"}));
    EXPECT_EQ(s.dataset("/a/values").read_all().sum().item<float>(), 8.0f);
    EXPECT_EQ(s.group("/samples").link_names(), std::vector<std::string>{"b"});
    EXPECT_EQ(UnitLedger(s, "/samples/b", 1).done_count(), 0);
    s.close();
  }
  if (w.is_root()) std::remove(path.c_str());
}

TEST(NewGroups, AGroupWithoutItsLedgerIsHalfCreatedAndMovesAside) {
  auto& w = test::world();
  const auto path = shared_path("half_created");
  {
    auto s = Store::open_or_create(path, w.comm(), "");
    auto g = s.create_group("/samples/t");  // as a creation cut short before the ledger
    g.set_attribute("settings", std::string("x=1"));
    EXPECT_TRUE(half_created(s, "/samples/t", {"settings"}));
    EXPECT_FALSE(half_created(s, "/samples/absent"));
    EXPECT_FALSE(unreadable(s, "/samples"));
    set_aside(s, "/samples/t", "test", "recover");
    set_aside(s, "/samples", "test", "recover");  // a second one gets the next free name
    EXPECT_FALSE(s.has("/samples"));
    EXPECT_TRUE(s.has("/damaged/samples/t.0"));
    EXPECT_TRUE(s.has("/damaged/samples.0"));
    s.create_group("/samples/t");
    UnitLedger::create(s.group("/samples/t"), 2);
    EXPECT_THROW(require_finished(s, "/samples/t", "units", "do them"), StoreError);
    s.close();
  }
  if (w.is_root()) std::remove(path.c_str());
}

TEST(UnitLedger, MarksSurviveReopen) {
  auto& w = test::world();
  const auto path = shared_path("ledger");
  {
    auto s = Store::open_or_create(path, w.comm(), "");
    UnitLedger::create(s.create_group("/stage"), 10);
    UnitLedger ledger(s, "/stage", 10);
    std::vector<std::int64_t> mine;
    for (std::int64_t u = w.rank(); u < 10; u += w.size())
      if (u % 3 == 0) mine.push_back(u);  // 0, 3, 6, 9
    ledger.mark_done(mine);
    s.close();
  }
  auto s = Store::open(path, w.comm(), true);
  UnitLedger ledger(s, "/stage", 10);
  EXPECT_EQ(ledger.done_count(), 4);
  for (std::int64_t u = 0; u < 10; ++u) EXPECT_EQ(ledger.is_done(u), u % 3 == 0) << u;
  EXPECT_THROW(UnitLedger(s, "/stage", 11), StoreError);
  s.close();
  MPI_Barrier(MPI_COMM_WORLD);
  if (w.is_root()) std::remove(path.c_str());
}

}  // namespace
}  // namespace dinv::store
