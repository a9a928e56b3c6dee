// One data-parallel classifier training run (Stage 3): every rank holds a
// replica (initial weights broadcast from rank 0), takes its slice of each
// global batch, and gradients are averaged in buckets that overlap the
// backward pass (GradientBuckets). The global data order depends only on the
// seed and the step, never on the rank count, so k ranks with per-rank batch b
// follow the same trajectory as one rank with batch k*b (BatchNorm aside: its
// batch statistics are per rank, and running statistics are averaged over
// ranks before every evaluation and checkpoint; with sync_batchnorm they are
// the global batch's, and the trajectory is the same again).
//
// Checkpoints (model, optimiser, step, loss scale, history) are
// written atomically every `checkpoint_every` steps and when SIGTERM/SIGUSR2
// arrives on any rank; a run finds its checkpoint and resumes from it. Random
// streams (data order, augmentation, dropout) derive from (seed, step), so no
// generator state needs saving.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <c10/core/Device.h>

#include "dinv/classify/batches.h"
#include "dinv/classify/data_parallel.h"
#include "dinv/classify/models.h"
#include "dinv/classify/optim.h"
#include "dinv/core/settings.h"
#include "dinv/data/dataset.h"

namespace dinv::dist {
class Communicator;
}
namespace torch::serialize {
class InputArchive;
}

namespace dinv::classify {

// Autocast precision of the forward pass on GPU (the loss stays fp32).
enum class Precision { fp32, fp16, bf16 };  // fp16: dynamic loss scaling
inline const settings::Names<Precision> kPrecisionNames{
    {{Precision::fp32, "fp32"}, {Precision::fp16, "fp16"}, {Precision::bf16, "bf16"}}};

struct TrainOptions {
  ModelSpec model;
  OptimizerOptions optimizer;
  std::int64_t steps = 1000;
  std::int64_t batch_size = 128;  // global: the sum over ranks
  std::int64_t warmup_steps = 0;
  double label_smoothing = 0.0;
  std::int64_t num_evals = 20;
  std::int64_t eval_batch_size = 256;     // per rank
  Precision precision = Precision::fp32;  // autocast, GPU only
  std::int64_t bucket_bytes = 25 << 20;
  std::uint64_t seed = 0;
  std::string checkpoint_path;  // "" = no checkpoints
  std::int64_t checkpoint_every = 0;
  bool batchnorm_frozen = false;  // BatchNorm in eval mode during training (tests)
  bool sync_batchnorm = false;    // SyncBN: batch statistics over all ranks (train.sync_bn)
  std::string progress = "auto";
};

struct EvalResult {
  std::int64_t step = 0;
  double accuracy = 0, loss = 0;
  std::vector<double> per_class_accuracy;
};

struct TrainResult {
  std::vector<std::int64_t> steps;  // one entry per training step
  std::vector<double> lr, loss;     // global mean training loss
  std::vector<EvalResult> evals;
  EvalResult best;  // highest accuracy (earliest on ties)
  std::int64_t steps_done = 0;
  bool stopped_by_signal = false;
  double train_seconds = 0, eval_seconds = 0;  // this process's part (resumed runs: since resume)
  std::int64_t resumed_from = 0;
  const EvalResult& final_eval() const { return evals.back(); }
};

class Trainer {
 public:
  // `comm` null: one process, no collectives.
  Trainer(TrainOptions options, std::unique_ptr<BatchSource> batches, dist::Communicator* comm, c10::Device device);
  // Plain datasets at the model's resolution (make_dataset_batches with crop
  // and flip, mean = std = 0.5): tests and tools.
  Trainer(TrainOptions options, data::DatasetPtr train, data::DatasetPtr test, dist::Communicator* comm,
          c10::Device device);
  ~Trainer();

  TrainResult run();
  ClassifierPtr model() const { return model_; }
  EvalResult evaluate(std::int64_t step);
  // Per-bucket all-reduce timing of the last step (empty without a communicator).
  std::vector<BucketTiming> last_bucket_timings() const;

 private:
  struct State;
  void check_options() const;
  // One optimiser step; returns this rank's loss (a scalar on the rank's device).
  at::Tensor train_step(std::int64_t step, TrainResult& result);
  bool agree_stop_and_check_loss(std::int64_t step, const at::Tensor& local_loss, double& global_loss);
  void average_batchnorm_statistics();
  std::vector<std::pair<std::string, at::Tensor>> gather_rank_buffers();
  void restore_rank_buffers(torch::serialize::InputArchive& archive);
  void save_checkpoint(std::int64_t next_step, const TrainResult& result);
  bool load_checkpoint(TrainResult& result, std::int64_t& next_step);
  void restore_model(torch::serialize::InputArchive& archive);

  TrainOptions options_;
  std::unique_ptr<BatchSource> batches_;
  dist::Communicator* comm_;
  c10::Device device_;
  ClassifierPtr model_;
  std::unique_ptr<State> state_;
};

}  // namespace dinv::classify
