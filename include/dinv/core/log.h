// Rank-aware logging. Rank 0 logs info and below for the whole job; every rank
// logs warnings and errors, prefixed with its rank, to stderr. Lines carry an
// ISO timestamp so that Slurm output files can be read against each other.
#pragma once

#include <sstream>
#include <string>

namespace dinv::log {

enum class Level { debug = 0, info = 1, warn = 2, error = 3, off = 4 };

// Set once after MPI starts (rank, size) and after the configuration is read.
void set_rank(int rank, int size);
void set_level(Level level);
Level level_from_string(const std::string& name);  // debug|info|warn|error|off
Level level();
int rank();

void write(Level level, const std::string& message);

inline void debug(const std::string& m) { write(Level::debug, m); }
inline void info(const std::string& m) { write(Level::info, m); }
inline void warn(const std::string& m) { write(Level::warn, m); }
inline void error(const std::string& m) { write(Level::error, m); }
// A warning every rank reaches with the same message (about the settings or
// shared data, not about one rank's work): written once, by rank 0.
inline void warn_job(const std::string& m) {
  if (rank() == 0) warn(m);
}

// "2026-11-25T10:00:00" in local time.
std::string timestamp();

}  // namespace dinv::log
