// Control collectives (docs/architecture.md, "Collectives"): the few numbers ranks must agree on
// around the work of a stage, such as whether any rank was stopped by a signal, how many units failed, or
// whether rank 0's part succeeded. They carry flags, counts and small fixed-size blocks over the
// world's MPI communicator on the CPU; the tensors of training go through a Communicator instead.
// Every call is collective: all ranks call it in the same order.
#pragma once

#include <cstdint>
#include <exception>
#include <vector>

namespace dinv::dist {

class World;

// True on every rank when `flag` is true on at least one (logical or).
bool any_rank(const World& world, bool flag);

// Element-wise sum over the ranks; every rank passes as many values.
std::vector<std::int64_t> sum_over_ranks(const World& world, const std::vector<std::int64_t>& values);
std::int64_t sum_over_ranks(const World& world, std::int64_t value);

// Rank 0's `value` on every rank (a status decided by rank 0 alone).
int broadcast_from_root(const World& world, int value);

// After work that rank 0 did alone: `failure` is what it threw (null when it
// succeeded; ignored on the other ranks). When rank 0 failed, every rank
// throws: rank 0 its own exception, the others an Error with its message and
// exit code (a ConfigError when it was one), so that the whole job ends with
// rank 0's message instead of the other ranks carrying on.
void rethrow_root_failure(const World& world, const std::exception_ptr& failure);

// Every rank's block, rank after rank; every rank passes a block of the same
// size.
std::vector<float> all_gather(const World& world, const std::vector<float>& block);
std::vector<std::int64_t> all_gather(const World& world, const std::vector<std::int64_t>& block);

}  // namespace dinv::dist
