// One writer per output: a stage holds an OutputLock on what it writes (the
// store, the generator folder, the results file) for the whole run. A second
// run on the same output while the first is alive (two generates on one store,
// generate beside retrieve, a rerun started before the killed job's ranks are
// gone) then fails at once with a message naming the holder, instead of both
// writing the same HDF5 file or checkpoint.
//
// Rank 0 holds flock(2) on OUTPUT.lock, which names the holder (stage, pid,
// host, start time) for that message. The kernel drops the lock when the
// process ends, however it ends, so kill -9 leaves no stale lock: the rerun
// takes it at once and resumes. The file is removed when the lock is released
// normally. A file system without flock (some Lustre mounts) gets a warning
// and no lock; on one with node-local locks only, runs on different nodes do
// not see each other's (docs/architecture.md, "One writer per output").
#pragma once

#include <string>

namespace dinv::dist {

class World;

class OutputLock {
 public:
  // Collective. Creates the output's folder when it is missing. Throws
  // IoError on every rank when another live process holds the lock, or when
  // the lock file cannot be created.
  OutputLock(const World& world, const std::string& output, const std::string& stage);
  ~OutputLock();
  OutputLock(const OutputLock&) = delete;
  OutputLock& operator=(const OutputLock&) = delete;

  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int fd_ = -1;  // rank 0 while it holds the lock, else -1
};

}  // namespace dinv::dist
