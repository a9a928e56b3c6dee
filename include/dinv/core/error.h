// One exception hierarchy for the whole program. Every error carries the
// context it happened in (file, key, tensor, line...) and an exit code, so that
// `main` can print one clear message and exit the way batch schedulers expect.
#pragma once

#include <stdexcept>
#include <string>

namespace dinv {

// Process exit codes. 2 is the conventional "usage" code that Slurm users
// recognise; everything else that goes wrong at run time is 1.
enum class ExitCode : int {
  ok = 0,
  failure = 1,  // run-time failure: I/O, numerics, collectives
  usage = 2,    // bad command line or configuration: fix the input and rerun
};

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message, ExitCode code = ExitCode::failure)
      : std::runtime_error(message), code_(code) {}
  ExitCode exit_code() const { return code_; }

 private:
  ExitCode code_;
};

// Bad command line, configuration file or configuration value.
class ConfigError : public Error {
 public:
  explicit ConfigError(const std::string& message) : Error(message, ExitCode::usage) {}
};

// A file that cannot be read or written, or whose contents are malformed.
class IoError : public Error {
 public:
  using Error::Error;
};

// HDF5 store problems: schema or fingerprint mismatch, HDF5 library errors
// (the message carries the HDF5 error stack).
class StoreError : public Error {
 public:
  using Error::Error;
};

// MPI / NCCL failures.
class DistError : public Error {
 public:
  using Error::Error;
};

// A model folder or tensor that does not match what the architecture expects.
class ModelError : public Error {
 public:
  using Error::Error;
};

}  // namespace dinv
