// Which ranks take part in a collective or share a file: the whole job, or
// this rank alone. Public headers name communicators through this type so
// that they need no <mpi.h>; it holds MPI's portable integer handle of the
// communicator (MPI_Comm_c2f), which code that includes <mpi.h> turns back
// with MPI_Comm_f2c(comm.handle()).
#pragma once

namespace dinv::dist {

class Comm {
 public:
  // Every rank of the job (MPI_COMM_WORLD); MPI must be initialised.
  static Comm world();
  // This rank alone (MPI_COMM_SELF): for files one rank reads or writes by
  // itself (a results file, a preview) through the MPI-IO driver.
  static Comm this_rank_only();

  int rank() const;
  int size() const;
  // MPI_Comm_c2f of the communicator.
  int handle() const { return handle_; }

 private:
  explicit Comm(int handle) : handle_(handle) {}
  int handle_;
};

}  // namespace dinv::dist
