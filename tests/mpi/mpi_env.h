// The MPI world of an MPI test process (set up by mpi_gtest_main.cpp).
#pragma once

#include "dinv/dist/world.h"

namespace dinv::test {
extern dist::World* g_world;
inline dist::World& world() { return *g_world; }
}  // namespace dinv::test
