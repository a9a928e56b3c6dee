// GoogleTest main for tests that run under mpirun: one MPI world for the whole
// process; only rank 0 prints results, but any rank's failure fails the run.
#include <mpi.h>

#include <gtest/gtest.h>

#include "dinv/dist/world.h"
#include "mpi/mpi_env.h"

namespace dinv::test {
dist::World* g_world = nullptr;
}

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  dinv::dist::World world(&argc, &argv);
  dinv::test::g_world = &world;
  if (world.rank() != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  const int failed = RUN_ALL_TESTS();
  int any = 0;
  MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  return any;
}
