#include "dinv/dist/control.h"

#include <mpi.h>

#include <climits>
#include <string>

#include "dinv/core/error.h"
#include "dinv/dist/world.h"

namespace dinv::dist {
namespace {

MPI_Comm mpi_comm(const World& world) { return MPI_Comm_f2c(world.comm().handle()); }

// MPI counts are ints: a block this large is a bug in the caller, not a reason to truncate.
int mpi_count(std::size_t n, const char* what) {
  if (n > static_cast<std::size_t>(INT_MAX))
    throw DistError(std::string(what) + ": " + std::to_string(n) + " values are more than one MPI call carries");
  return static_cast<int>(n);
}

template <typename T>
std::vector<T> gather_blocks(const World& world, const std::vector<T>& block, MPI_Datatype type) {
  const int n = mpi_count(block.size(), "all_gather");
  std::vector<T> all(block.size() * static_cast<std::size_t>(world.size()));
  check_mpi(MPI_Allgather(block.data(), n, type, all.data(), n, type, mpi_comm(world)), "MPI_Allgather");
  return all;
}

// Rank 0's message and exit code, sent to every rank.
struct RootError {
  int code = 0;  // 0: rank 0 succeeded
  std::string message;
};

RootError describe(const std::exception_ptr& failure) {
  if (!failure) return {};
  try {
    std::rethrow_exception(failure);
  } catch (const Error& e) {
    // An Error that claims success still failed: never let it read as 0.
    const auto code = e.exit_code() == ExitCode::ok ? ExitCode::failure : e.exit_code();
    return {static_cast<int>(code), e.what()};
  } catch (const std::exception& e) {
    return {static_cast<int>(ExitCode::failure), std::string("unexpected: ") + e.what()};
  }
  return {static_cast<int>(ExitCode::failure), "unknown failure"};
}

}  // namespace

bool any_rank(const World& world, bool flag) { return sum_over_ranks(world, flag ? 1 : 0) > 0; }

std::vector<std::int64_t> sum_over_ranks(const World& world, const std::vector<std::int64_t>& values) {
  std::vector<std::int64_t> out(values.size());
  check_mpi(MPI_Allreduce(values.data(), out.data(), mpi_count(values.size(), "sum_over_ranks"), MPI_INT64_T, MPI_SUM,
                          mpi_comm(world)),
            "MPI_Allreduce");
  return out;
}

std::int64_t sum_over_ranks(const World& world, std::int64_t value) {
  return sum_over_ranks(world, std::vector<std::int64_t>{value}).front();
}

int broadcast_from_root(const World& world, int value) {
  check_mpi(MPI_Bcast(&value, 1, MPI_INT, 0, mpi_comm(world)), "MPI_Bcast");
  return value;
}

void rethrow_root_failure(const World& world, const std::exception_ptr& failure) {
  RootError e = world.is_root() ? describe(failure) : RootError{};
  e.code = broadcast_from_root(world, e.code);
  if (e.code == 0) return;
  const int length = broadcast_from_root(world, mpi_count(e.message.size(), "rethrow_root_failure"));
  e.message.resize(static_cast<std::size_t>(length));
  check_mpi(MPI_Bcast(e.message.data(), length, MPI_CHAR, 0, mpi_comm(world)), "MPI_Bcast");
  if (world.is_root()) std::rethrow_exception(failure);
  if (e.code == static_cast<int>(ExitCode::usage)) throw ConfigError(e.message);
  throw Error(e.message, static_cast<ExitCode>(e.code));
}

std::vector<float> all_gather(const World& world, const std::vector<float>& block) {
  return gather_blocks(world, block, MPI_FLOAT);
}

std::vector<std::int64_t> all_gather(const World& world, const std::vector<std::int64_t>& block) {
  return gather_blocks(world, block, MPI_INT64_T);
}

}  // namespace dinv::dist
