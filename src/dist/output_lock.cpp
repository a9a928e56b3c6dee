#include "dinv/dist/output_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <exception>
#include <filesystem>

#include "dinv/core/error.h"
#include "dinv/core/log.h"
#include "dinv/dist/control.h"
#include "dinv/dist/world.h"

namespace dinv::dist {
namespace {

// "dinv generate, pid 1234 on node017, since 2026-11-29T21:40:00Z"
std::string holder_text(const std::string& stage) {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0) std::strcpy(host, "?");
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char since[32];
  std::strftime(since, sizeof since, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return "dinv " + stage + ", pid " + std::to_string(::getpid()) + " on " + host + ", since " + since;
}

std::string read_holder(int fd) {
  char text[512];
  const auto n = ::pread(fd, text, sizeof text, 0);
  std::string holder(text, n > 0 ? static_cast<std::size_t>(n) : 0);
  while (!holder.empty() && (holder.back() == '\n' || holder.back() == '\0')) holder.pop_back();
  return holder.empty() ? "a run that has not written its name yet" : holder;
}

bool same_file(int fd, const std::string& path) {
  struct stat held {};
  struct stat now {};
  return ::fstat(fd, &held) == 0 && ::stat(path.c_str(), &now) == 0 && held.st_dev == now.st_dev &&
         held.st_ino == now.st_ino;
}

// Errors of flock(2) that mean "this file system has no locks", not "taken".
bool no_locks_here(int err) { return err == ENOLCK || err == ENOSYS || err == EOPNOTSUPP || err == EINVAL; }

// Rank 0: the descriptor that holds the lock on `path`, or -1 where the file
// system has no locks.
int take(const std::string& path, const std::string& output, const std::string& stage) {
  // The run writes into this folder anyway; a missing one is made now so that
  // the lock can live there.
  const auto folder = std::filesystem::path(path).parent_path();
  std::error_code ec;
  if (!folder.empty()) std::filesystem::create_directories(folder, ec);
  if (ec) throw IoError("cannot create the folder '" + folder.string() + "' of " + output + ": " + ec.message());
  // A releasing holder removes the file: if that happened between our open
  // and our flock, we hold a file nobody else can find, so try again.
  for (int attempt = 0; attempt < 100; ++attempt) {
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
      throw IoError("cannot create the lock file '" + path + "' of " + output + ": " + std::strerror(errno) +
                    " (a run locks its output so that no second run writes it at the same time)");
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      const int err = errno;
      const std::string holder = err == EWOULDBLOCK ? read_holder(fd) : "";
      ::close(fd);
      if (err == EWOULDBLOCK)
        throw IoError(output + " is being written by another run (" + holder + "; lock file " + path +
                      "). Two runs must not write one output at once: wait for that run to end, or stop it and "
                      "rerun this command, which resumes from what it saved.");
      if (no_locks_here(err)) {
        log::warn(stage + ": the file system of " + path + " has no file locks (" + std::strerror(err) +
                  "): a second run writing " + output + " at the same time would not be detected");
        return -1;
      }
      throw IoError("cannot lock '" + path + "': " + std::strerror(err));
    }
    if (same_file(fd, path)) {
      const auto text = holder_text(stage) + "\n";
      if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, text.data(), text.size(), 0) != static_cast<ssize_t>(text.size()))
        log::warn(stage + ": could not write the holder's name into " + path + " (the lock holds all the same)");
      return fd;
    }
    ::close(fd);
  }
  throw IoError("cannot lock '" + path + "': the file keeps being replaced by other runs");
}

}  // namespace

OutputLock::OutputLock(const World& world, const std::string& output, const std::string& stage)
    : path_(output + ".lock") {
  std::exception_ptr failure;
  if (world.is_root()) {
    try {
      fd_ = take(path_, output, stage);
    } catch (...) {
      failure = std::current_exception();
    }
  }
  rethrow_root_failure(world, failure);
}

OutputLock::~OutputLock() {
  if (fd_ < 0) return;
  // Removed while still held, so that the next run creates a fresh file (take()
  // checks that the file it locked is still the one at the path).
  ::unlink(path_.c_str());
  ::close(fd_);
}

}  // namespace dinv::dist
