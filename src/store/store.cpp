#include "dinv/store/store.h"

#include <mpi.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <cstdlib>
#include <ctime>

#include <ATen/ATen.h>

#include "dinv/core/build_info.h"
#include "dinv/core/error.h"
#include "dinv/core/log.h"
#include "dinv/dist/world.h"

namespace dinv::store {
namespace {

bool file_exists(const std::string& path) { return access(path.c_str(), F_OK) == 0; }

// Every rank must agree on whether the file exists before a collective open.
bool exists_on_root(const std::string& path, const dist::Comm& comm) {
  int exists = comm.rank() == 0 ? static_cast<int>(file_exists(path)) : 0;
  dist::check_mpi(MPI_Bcast(&exists, 1, MPI_INT, 0, MPI_Comm_f2c(comm.handle())), "MPI_Bcast");
  return exists != 0;
}

}  // namespace

std::string creation_time() {
  std::time_t t = std::time(nullptr);
  if (const char* sde = std::getenv("SOURCE_DATE_EPOCH")) t = static_cast<std::time_t>(std::atoll(sde));
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string dinv_version_string() { return std::string(DINV_VERSION) + "+" + DINV_GIT_SHA; }

Store Store::open_or_create(const std::string& path, const dist::Comm& comm, const std::string& config_text) {
  if (exists_on_root(path, comm)) return open(path, comm, true);
  // Build the new file under a temporary name and rename it when its root is
  // complete, so that a crash during creation never leaves a half-made store.
  const std::string partial = path + ".creating";
  {
    h5::File file = h5::File::create(partial, comm);
    file.set_attribute("schema_version", kSchemaVersion);
    file.set_attribute("dinv_version", dinv_version_string());
    file.set_attribute("config", config_text);
    file.set_attribute("created", creation_time());
    // Made here, where creation is atomic (rename below): a full disk while a
    // later stage flushes a new tag can then damage at most that tag.
    file.create_group("/samples");
    file.close();
  }
  int rc = 0;
  if (comm.rank() == 0 && std::rename(partial.c_str(), path.c_str()) != 0) rc = errno;
  dist::check_mpi(MPI_Bcast(&rc, 1, MPI_INT, 0, MPI_Comm_f2c(comm.handle())), "MPI_Bcast");
  if (rc != 0) throw StoreError("cannot rename " + partial + " to " + path + ": " + std::strerror(rc));
  return open(path, comm, true);
}

Store Store::open(const std::string& path, const dist::Comm& comm, bool writable) {
  if (!exists_on_root(path, comm)) throw StoreError("store '" + path + "' does not exist");
  h5::File file;
  try {
    file = h5::File::open(path, comm, writable);
  } catch (const StoreError& e) {
    throw StoreError("'" + path + "' is not a readable dinv store (not an HDF5 file, or damaged): " + e.what());
  }
  Store store(path, comm, std::move(file));
  store.check_schema();
  return store;
}

void Store::check_schema() const {
  if (!file_.has_attribute("schema_version"))
    throw StoreError("'" + path_ + "' is an HDF5 file but not a dinv store (no schema_version attribute)");
  const auto version = file_.int_attribute("schema_version");
  if (version != kSchemaVersion)
    throw StoreError("store '" + path_ + "' has schema version " + std::to_string(version) + " (written by dinv " +
                     file_.string_attribute("dinv_version") + "); this dinv " + dinv_version_string() +
                     " reads schema version " + std::to_string(kSchemaVersion) +
                     ": use the matching dinv or write a new store");
}

h5::Group Store::group(const std::string& object) const {
  if (!has(object)) throw StoreError("store '" + path_ + "' has no group '" + object + "'");
  return file_.open_group(object);
}

h5::Dataset Store::dataset(const std::string& object) const {
  if (!has(object)) throw StoreError("store '" + path_ + "' has no dataset '" + object + "'");
  return file_.open_dataset(object);
}

h5::Group Store::create_group(const std::string& object) { return file_.create_group(object); }
void Store::remove(const std::string& object) { file_.remove(object); }

void Store::move(const std::string& from, const std::string& to) { file_.move(from, to); }

void Store::require_free_space(std::int64_t bytes, const std::string& what) const {
  std::int64_t free = -1;  // unknown: let the writes tell
  struct statvfs fs {};
  if (comm_.rank() == 0 && statvfs(path_.c_str(), &fs) == 0)
    free = static_cast<std::int64_t>(fs.f_bavail) * static_cast<std::int64_t>(fs.f_frsize);
  dist::check_mpi(MPI_Bcast(&free, 1, MPI_INT64_T, 0, MPI_Comm_f2c(comm_.handle())), "MPI_Bcast");
  if (free >= 0 && free < bytes)
    throw StoreError("not enough free space for " + what + " in store '" + path_ + "': it needs about " +
                     std::to_string(bytes) + " bytes, the file system has " + std::to_string(free) +
                     " bytes free. Nothing was written; free space (or move the store) and rerun.");
}

h5::Dataset Store::create_dataset(const std::string& object, at::ScalarType dtype,
                                  const std::vector<std::int64_t>& dims) {
  return file_.create_dataset(object, dtype, dims);
}

h5::Dataset Store::require_dataset(const std::string& object, at::ScalarType dtype,
                                   const std::vector<std::int64_t>& dims) const {
  h5::Dataset d = dataset(object);
  d.require_layout(dtype, dims);
  return d;
}

void Store::require_attribute(const std::string& object, const std::string& name, const std::string& expected,
                              const std::string& hint) const {
  const std::string where = "store '" + path_ + "', " + object;
  const std::string found = group(object).string_attribute(name);
  if (found != expected)
    throw StoreError(where + ": " + name + " is '" + found + "' but this run has '" + expected + "'. " + hint);
}

void Store::require_attribute_if_recorded(const std::string& object, const std::string& name,
                                          const std::string& expected, const std::string& hint) const {
  if (group(object).has_attribute(name)) require_attribute(object, name, expected, hint);
}

void Store::flush() { file_.flush(); }

void Store::close() { file_.close(); }

// ------------------------------------------------------------------- ledger

bool half_created(const Store& st, const std::string& group, const std::vector<std::string>& attributes) {
  try {
    if (!st.has(group)) return false;
    if (!st.has(group + "/done") || st.dataset(group + "/done").dims().empty()) return true;
    const h5::Group g = st.group(group);
    for (const auto& name : attributes) g.string_attribute(name);
    return false;
  } catch (const StoreError&) {
    return true;
  }
}

bool unreadable(const Store& st, const std::string& object) {
  try {
    if (st.has(object)) st.group(object).link_names();
    return false;
  } catch (const StoreError&) {
    return true;
  }
}

void set_aside(Store& st, const std::string& object, const std::string& stage, const std::string& recover) {
  std::string to;
  for (int n = 0; to.empty() || st.has(to); ++n) to = "/damaged" + object + "." + std::to_string(n);
  log::warn_job(stage + ": " + st.path() + ":" + object +
                " was left unreadable or half-created by a run whose writes " +
                "failed or that was killed; it holds nothing finished: moving it to " + to + " and creating it again");
  try {
    st.move(object, to);
  } catch (const StoreError& e) {
    throw StoreError("store '" + st.path() + "': " + object + " was left unreadable by a run whose writes failed " +
                     "(a full disk) while it was being created, and HDF5 cannot move it aside: " + e.what() + "\n" +
                     recover);
  }
}

void set_aside_damaged_tag(Store& st, const std::string& group, const std::string& stage, const std::string& recover) {
  if (unreadable(st, "/samples")) set_aside(st, "/samples", stage, recover);
  if (half_created(st, group, {"settings"})) set_aside(st, group, stage, recover);
}

void require_finished(const Store& st, const std::string& group, const std::string& what,
                      const std::string& next_step) {
  const h5::Dataset ledger = st.dataset(group + "/done");
  ledger.require_layout(at::kByte, {-1});
  const auto units = ledger.dims().at(0);
  const auto finished = ledger.read_all().ne(0).sum().item<std::int64_t>();
  if (finished != units)
    throw StoreError("store '" + st.path() + "': only " + std::to_string(finished) + " of " + std::to_string(units) +
                     " " + what + " are finished: " + next_step);
}

h5::Group& NewGroups::add(const std::string& path) {
  groups_.push_back(store_.file().create_unlinked_group(path));
  return groups_.back();
}

void NewGroups::commit() {
  store_.flush();
  for (const auto& g : groups_) store_.file().link(g);
  store_.flush();
  groups_.clear();
}

void UnitLedger::create(const h5::Group& group, std::int64_t units) {
  group.create_dataset("done", at::kByte, {units});
}

UnitLedger::UnitLedger(Store& store, const std::string& group, std::int64_t units)
    : store_(store), dataset_(store.require_dataset(group + "/done", at::kByte, {units})) {
  const at::Tensor flags = dataset_.read_all();
  done_.assign(flags.data_ptr<std::uint8_t>(), flags.data_ptr<std::uint8_t>() + units);
}

std::int64_t UnitLedger::done_count() const {
  std::int64_t n = 0;
  for (auto d : done_) n += d != 0;
  return n;
}

void UnitLedger::mark_done(const std::vector<std::int64_t>& units) {
  // Each rank's finished units in a round are contiguous in practice (block
  // partition); write them as runs, one collective call per run index so that
  // every rank takes part in the same number of calls.
  std::vector<std::pair<std::int64_t, std::int64_t>> runs;
  for (auto u : units) {
    if (!runs.empty() && runs.back().second == u)
      runs.back().second = u + 1;
    else
      runs.emplace_back(u, u + 1);
  }
  int mine = static_cast<int>(runs.size()), most = 0;
  dist::check_mpi(MPI_Allreduce(&mine, &most, 1, MPI_INT, MPI_MAX, MPI_Comm_f2c(store_.comm().handle())),
                  "MPI_Allreduce");
  for (int i = 0; i < most; ++i) {
    at::Tensor ones;
    std::int64_t begin = 0;
    if (i < mine) {
      begin = runs[i].first;
      ones = at::ones({runs[i].second - runs[i].first}, at::kByte);
    }
    dataset_.write_rows(begin, ones, h5::Transfer::collective);
  }
  for (auto u : units) done_.at(static_cast<std::size_t>(u)) = 1;
}

void UnitLedger::mark_done_independent(std::int64_t unit) {
  dataset_.write_rows(unit, at::ones({1}, at::kByte), h5::Transfer::independent);
  done_.at(static_cast<std::size_t>(unit)) = 1;
}

}  // namespace dinv::store
