// Data-parallel gradient synchronisation (docs/architecture.md, "Collectives"): parameters
// are grouped, in reverse registration order (roughly the order backward
// produces their gradients), into buckets of about `bucket_bytes`. A
// post-accumulate-grad hook on every parameter copies its gradient into the
// bucket's flat buffer; when a bucket is complete its all-reduce starts at
// once on the communicator's thread, overlapping the rest of the backward
// pass. Buckets start strictly in index order so that every rank issues the
// same collectives in the same order. finish() waits for all of them and
// writes the averaged gradients back.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include <ATen/core/Tensor.h>

#include "dinv/dist/communicator.h"

namespace dinv::classify {

// The end of a data-parallel training step, agreed in one collective on the
// loss's device (the NCCL backend reduces device tensors only): the mean loss
// over the ranks, and whether any rank was asked to stop (a signal), so that
// all ranks stop after the same step. `comm` may be null (one process).
struct StepAgreement {
  double mean_loss = 0;
  bool stop = false;
};
StepAgreement agree_on_step(dist::Communicator* comm, const at::Tensor& local_loss);

// When one bucket's all-reduce started and when finish() had it back, in
// seconds relative to the end of the backward pass (negative = before).
struct BucketTiming {
  std::int64_t bucket = 0;
  std::int64_t bytes = 0;
  double started = 0, completed = 0;
};

class GradientBuckets {
 public:
  // `params` in registration order; hooks are installed on each of them.
  GradientBuckets(std::vector<at::Tensor> params, dist::Communicator& comm, std::int64_t bucket_bytes);
  ~GradientBuckets();
  GradientBuckets(const GradientBuckets&) = delete;
  GradientBuckets& operator=(const GradientBuckets&) = delete;

  // Call before each backward pass.
  void begin_step();
  // Call after backward returned: starts buckets whose parameters got no
  // gradient (zeros), waits for every all-reduce, and replaces each gradient
  // by the mean over ranks.
  void finish_step();

  std::size_t bucket_count() const { return buckets_.size(); }
  // Timings of the last step.
  std::vector<BucketTiming> last_timings() const;

  // Called by the hooks (public for them only).
  void on_gradient_ready(std::size_t param_index);

 private:
  struct Bucket {
    std::vector<std::size_t> params;  // indices into params_
    std::vector<std::int64_t> offsets;
    at::Tensor flat;
    std::size_t pending = 0;
    bool launched = false;
    std::unique_ptr<dist::Work> work;
    std::chrono::steady_clock::time_point started;
  };
  void launch_ready_buckets();  // caller holds mutex_
  void launch(Bucket& bucket);

  std::vector<at::Tensor> params_;
  std::vector<std::size_t> bucket_of_;  // param index -> bucket index
  std::vector<std::size_t> slot_of_;    // param index -> position in its bucket
  std::vector<bool> seen_;
  std::vector<Bucket> buckets_;
  std::size_t next_launch_ = 0;
  dist::Communicator& comm_;
  std::mutex mutex_;
  std::vector<BucketTiming> timings_;
};

}  // namespace dinv::classify
