// The experiment store (docs/architecture.md, "Store layout"): one parallel HDF5 file per
// experiment, self-describing (schema version, dinv version, configuration,
// fingerprints as attributes) and safe against crashes: stages create their
// groups and fixed-size datasets up front, flush the metadata, and from then
// on write raw data only, recording finished work units in a ledger.
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "dinv/dist/comm.h"
#include "dinv/store/h5.h"

namespace dinv::store {

// Bumped whenever the layout changes incompatibly.
constexpr std::int64_t kSchemaVersion = 1;

class Store {
 public:
  // Open the store at `path`, creating it (collectively over `comm`) when it
  // does not exist yet. A new store gets the root attributes; an existing one
  // must have this dinv's schema version.
  static Store open_or_create(const std::string& path, const dist::Comm& comm, const std::string& config_text);
  // Open an existing store (collective over `comm`).
  static Store open(const std::string& path, const dist::Comm& comm, bool writable);

  const std::string& path() const { return path_; }
  const h5::File& file() const { return file_; }
  const dist::Comm& comm() const { return comm_; }

  bool has(const std::string& object) const { return file_.exists(object); }
  h5::Group group(const std::string& object) const;
  h5::Dataset dataset(const std::string& object) const;
  // Metadata changes: collective, every rank with the same arguments.
  h5::Group create_group(const std::string& object);
  void move(const std::string& from, const std::string& to);
  void remove(const std::string& object);  // unlink (collective)
  // Collective: a StoreError naming `what`, the need and the free space when
  // the store's file system has less than `bytes` free (checked before
  // allocating, because a full disk while HDF5 writes metadata can leave new
  // groups unreadable).
  void require_free_space(std::int64_t bytes, const std::string& what) const;
  h5::Dataset create_dataset(const std::string& object, at::ScalarType dtype, const std::vector<std::int64_t>& dims);
  // Shape and dtype of an existing dataset must be exactly these
  // (h5::Dataset::require_layout names both otherwise).
  h5::Dataset require_dataset(const std::string& object, at::ScalarType dtype,
                              const std::vector<std::int64_t>& dims) const;

  // A string attribute of `object` must equal `expected`; otherwise a
  // StoreError naming the store, object, attribute, both values and `hint`.
  void require_attribute(const std::string& object, const std::string& name, const std::string& expected,
                         const std::string& hint) const;
  // The same where `object` has the attribute; one that has not (written by
  // an older dinv, before the attribute was recorded) is accepted.
  void require_attribute_if_recorded(const std::string& object, const std::string& name, const std::string& expected,
                                     const std::string& hint) const;

  void flush();
  // Close now, reporting failures (the destructor closes silently).
  void close();

 private:
  Store(std::string path, const dist::Comm& comm, h5::File file)
      : path_(std::move(path)), comm_(comm), file_(std::move(file)) {}
  void check_schema() const;

  std::string path_;
  dist::Comm comm_;
  h5::File file_;
};

// The groups a stage creates before its first unit, made crash-safe: each is
// built with no link naming it (its attributes, datasets and ledger below it
// as usual), and commit() flushes them all to disk, links them at their paths
// and flushes again. A run stopped at any write before the links leaves
// nothing a reader sees (the unlinked objects are space h5repack reclaims);
// one stopped while the links are flushed leaves links to whole groups, or a
// parent whose link table cannot be read (set_aside, unreadable). Collective.
class NewGroups {
 public:
  explicit NewGroups(Store& store) : store_(store) {}
  // A group to be linked at `path` (its parent exists by commit()).
  h5::Group& add(const std::string& path);
  void commit();

 private:
  Store& store_;
  std::deque<h5::Group> groups_;  // stable references
};

// Which work units of a stage are finished, as the dataset `<group>/done`
// (one byte per unit). Units are marked only after their data was written,
// so a kill at any moment at worst redoes the units under way.
class UnitLedger {
 public:
  // Collective: create the ledger of `units` units (all pending) in `group`,
  // after its other members (a group with a readable ledger is whole).
  static void create(const h5::Group& group, std::int64_t units);
  // Read the ledger of `group` (fails clearly if absent or of another size).
  UnitLedger(Store& store, const std::string& group, std::int64_t units);

  std::int64_t size() const { return static_cast<std::int64_t>(done_.size()); }
  bool is_done(std::int64_t unit) const { return done_.at(static_cast<std::size_t>(unit)) != 0; }
  std::int64_t done_count() const;
  // Collective: every rank passes the units it finished since its last call
  // (possibly none). Their data must already be written.
  void mark_done(const std::vector<std::int64_t>& units);
  // Independent: this rank alone records one finished unit (stages whose
  // ranks progress at their own pace).
  void mark_done_independent(std::int64_t unit);

 private:
  Store& store_;
  h5::Dataset dataset_;
  std::vector<std::uint8_t> done_;
};

// A group whose ledger or whose `attributes` (string attributes) cannot be
// read was being created when a write failed (a full disk) or the run was
// killed (groups made before NewGroups, whose ledger came last, or a linking
// flush cut short), and nothing in it is finished. False when `group` is absent.
bool half_created(const Store& st, const std::string& group, const std::vector<std::string>& attributes = {});
// Whether the group `object` exists but cannot be opened or its link table
// read (its creation, or that of its first member, cut short alike).
bool unreadable(const Store& st, const std::string& object);
// Collective: move such an `object` to /damaged<object>.<n>, out of every
// reader's way, with a warning from `stage`. Only links change, so this works
// on damaged objects (h5repack reclaims the space). Where HDF5 cannot even
// move it, a StoreError saying so, then `recover`.
void set_aside(Store& st, const std::string& object, const std::string& stage, const std::string& recover);
// Collective, before a tag `group` below /samples is created or resumed: an
// unreadable /samples, then a half-created tag (ledger or settings
// unreadable), moves aside (set_aside), so that the tag is created again.
void set_aside_damaged_tag(Store& st, const std::string& group, const std::string& stage, const std::string& recover);
// Every unit of `group`'s ledger is finished; otherwise a StoreError naming
// the store and the count ("only 3 of 5 <what> are finished: <next_step>").
void require_finished(const Store& st, const std::string& group, const std::string& what, const std::string& next_step);

// The creation time recorded in a new store: $SOURCE_DATE_EPOCH when set (the
// reproducible-builds convention, used by tests that compare bytes), else now.
std::string creation_time();
// "0.1.0+<git sha>"
std::string dinv_version_string();

}  // namespace dinv::store
