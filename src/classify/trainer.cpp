#include "dinv/classify/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/nn/functional/loss.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/optim/adamw.h>
#include <torch/optim/optimizer.h>
#include <torch/optim/sgd.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>

#include "dinv/core/error.h"
#include "dinv/core/log.h"
#include "dinv/core/progress.h"
#include "dinv/core/signals.h"
#include "dinv/dist/communicator.h"
#include "dinv/data/rng.h"
#include "dinv/io/files.h"

namespace dinv::classify {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// Mixed precision on the GPU for the forward pass (the loss stays fp32).
class AutocastScope {
 public:
  AutocastScope(Precision precision, c10::Device device) : active_(device.is_cuda() && precision != Precision::fp32) {
    if (!active_) return;
    at::autocast::set_autocast_dtype(at::kCUDA, precision == Precision::bf16 ? at::kBFloat16 : at::kHalf);
    at::autocast::set_autocast_enabled(at::kCUDA, true);
  }
  ~AutocastScope() {
    if (!active_) return;
    at::autocast::set_autocast_enabled(at::kCUDA, false);
    at::autocast::clear_cache();
  }

 private:
  bool active_;
};

}  // namespace

struct Trainer::State {
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  std::unique_ptr<GradientBuckets> buckets;
  double loss_scale = 1.0;  // fp16 dynamic loss scaling
  std::int64_t good_steps = 0;
};

namespace {
DatasetBatchOptions plain_batches(const TrainOptions& o) {
  DatasetBatchOptions b;
  b.global_batch = o.batch_size;
  b.eval_batch = o.eval_batch_size;
  b.resolution = o.model.resolution;
  b.seed = o.seed;
  b.augment = true;
  return b;
}
}  // namespace

Trainer::Trainer(TrainOptions options, data::DatasetPtr train, data::DatasetPtr test, dist::Communicator* comm,
                 c10::Device device)
    : Trainer(options,
              make_dataset_batches(std::move(train), std::move(test), plain_batches(options), comm ? comm->rank() : 0,
                                   comm ? comm->size() : 1),
              comm, device) {}

Trainer::Trainer(TrainOptions options, std::unique_ptr<BatchSource> batches, dist::Communicator* comm,
                 c10::Device device)
    : options_(std::move(options)),
      batches_(std::move(batches)),
      comm_(comm),
      device_(device),
      state_(std::make_unique<State>()) {
  check_options();
  at::manual_seed(data::mix_seed({options_.seed, 0x5eed}));  // same initial weights on every rank ...
  model_ = make_model(options_.model);
  model_->to(device_);
  if (comm_) {  // ... and rank 0's are authoritative
    for (auto& p : model_->parameters()) {
      at::Tensor data = p.detach();
      comm_->broadcast(data, 0);
    }
    for (auto& b : model_->buffers()) comm_->broadcast(b, 0);
  }
  if (options_.sync_batchnorm && comm_) synchronise_batchnorm(*model_, comm_);
  state_->optimizer = make_optimizer(model_->parameters(), options_.optimizer);
  if (comm_) state_->buckets = std::make_unique<GradientBuckets>(model_->parameters(), *comm_, options_.bucket_bytes);
  if (options_.precision == Precision::fp16 && device_.is_cuda()) state_->loss_scale = 65536.0;
}

Trainer::~Trainer() = default;

void Trainer::check_options() const {
  const int size = comm_ ? comm_->size() : 1;
  if (options_.batch_size % size != 0)
    throw ConfigError("train.batch_size = " + std::to_string(options_.batch_size) + " is not divisible by the " +
                      std::to_string(size) + " ranks of this job (each rank takes batch_size / ranks)");
  if (options_.steps < 1) throw ConfigError("train.steps must be >= 1");
  if (options_.precision != Precision::fp32 && !device_.is_cuda())
    log::warn_job("train.precision = " + kPrecisionNames.name(options_.precision) +
                  " applies on GPU only; training in fp32 on " + device_.str());
}

std::vector<BucketTiming> Trainer::last_bucket_timings() const {
  return state_->buckets ? state_->buckets->last_timings() : std::vector<BucketTiming>{};
}

// The step's one collective (agree_on_step), and a clear end when the loss
// stopped being finite.
bool Trainer::agree_stop_and_check_loss(std::int64_t step, const at::Tensor& local_loss, double& global_loss) {
  const StepAgreement agreed = agree_on_step(comm_, local_loss);
  global_loss = agreed.mean_loss;
  if (!std::isfinite(global_loss)) {
    std::string kept = options_.checkpoint_path.empty() || !std::filesystem::exists(options_.checkpoint_path)
                           ? "no checkpoint was written"
                           : "the last good checkpoint " + options_.checkpoint_path + " is kept";
    throw Error("training diverged: the loss is " + std::to_string(global_loss) + " at step " + std::to_string(step) +
                " (lower train.lr or check the data); " + kept);
  }
  return agreed.stop;
}

at::Tensor Trainer::train_step(std::int64_t step, TrainResult& result) {
  const int rank = comm_ ? comm_->rank() : 0;
  // Dropout draws from the global generator: seeding it from (seed, step, rank)
  // makes every step reproducible without saving generator states.
  at::manual_seed(
      data::mix_seed({options_.seed, static_cast<std::uint64_t>(step), 1000u + static_cast<std::uint64_t>(rank)}));
  TrainBatch batch = batches_->train_batch(step);
  at::Tensor images = batch.images.to(device_), labels = batch.labels.to(device_);
  const double lr = options_.optimizer.lr * lr_factor(step, options_.steps, options_.warmup_steps);
  set_learning_rate(*state_->optimizer, lr);
  model_->train(!options_.batchnorm_frozen);
  state_->optimizer->zero_grad();
  at::Tensor loss;
  {
    AutocastScope autocast(options_.precision, device_);
    at::Tensor logits = model_->forward(images);
    const auto ce = torch::nn::functional::CrossEntropyFuncOptions().label_smoothing(options_.label_smoothing);
    logits = logits.to(at::kFloat);
    loss = torch::nn::functional::cross_entropy(logits, labels, ce);
    if (batch.labels_b.defined())  // MixUp / CutMix
      loss = batch.lambda * loss +
             (1.0 - batch.lambda) * torch::nn::functional::cross_entropy(logits, batch.labels_b.to(device_), ce);
  }
  if (state_->buckets) state_->buckets->begin_step();
  (loss * state_->loss_scale).backward();
  if (state_->buckets) state_->buckets->finish_step();
  bool finite = true;
  if (state_->loss_scale != 1.0) {  // fp16: unscale, skip steps with overflowed gradients
    std::vector<at::Tensor> all_finite;
    for (auto& p : model_->parameters()) {
      if (!p.grad().defined()) continue;
      p.mutable_grad().div_(state_->loss_scale);
      all_finite.push_back(at::isfinite(p.grad()).all());
    }
    finite = all_finite.empty() || at::stack(all_finite).all().item<bool>();  // one host synchronisation
    state_->loss_scale = finite ? state_->loss_scale : state_->loss_scale / 2;
    if (finite && ++state_->good_steps % 2000 == 0) state_->loss_scale *= 2;
  }
  if (finite) state_->optimizer->step();
  result.steps.push_back(step);
  result.lr.push_back(lr);
  return loss.detach();
}

void Trainer::average_batchnorm_statistics() {
  if (!comm_ || comm_->size() == 1) return;
  torch::NoGradGuard no_grad;
  for (auto& b : model_->buffers()) {
    if (!at::isFloatingType(b.scalar_type())) continue;  // num_batches_tracked is equal everywhere
    comm_->all_reduce(b);
    b.div_(static_cast<double>(comm_->size()));
  }
}

EvalResult Trainer::evaluate(std::int64_t step) {
  torch::NoGradGuard no_grad;
  average_batchnorm_statistics();
  model_->eval();
  const std::int64_t classes = options_.model.num_classes;
  // [correct per class, count per class, loss sum], summed on the rank's device
  // (no host synchronisation per batch; NCCL reduces device tensors).
  at::Tensor sums = at::zeros({2 * classes + 1}, at::TensorOptions().dtype(at::kDouble).device(device_));
  batches_->for_each_eval_batch([&](const at::Tensor& images, const at::Tensor& cpu_labels) {
    at::Tensor logits;
    {
      AutocastScope autocast(options_.precision, device_);
      logits = model_->forward(images.to(device_));
    }
    logits = logits.to(at::kFloat);
    const at::Tensor labels = cpu_labels.to(device_);
    sums.narrow(0, 2 * classes, 1).add_(at::cross_entropy_loss(logits, labels, {}, at::Reduction::Sum).to(at::kDouble));
    at::Tensor correct = logits.argmax(1).eq(labels).to(at::kDouble);
    sums.narrow(0, 0, classes).index_add_(0, labels, correct);
    sums.narrow(0, classes, classes).index_add_(0, labels, at::ones_like(correct));
  });
  if (comm_) comm_->all_reduce(sums);
  sums = sums.cpu();
  EvalResult r;
  r.step = step;
  const double total = sums.narrow(0, classes, classes).sum().item<double>();
  r.accuracy = sums.narrow(0, 0, classes).sum().item<double>() / total;
  r.loss = sums[2 * classes].item<double>() / total;
  for (std::int64_t c = 0; c < classes; ++c) {
    const double count = sums[classes + c].item<double>();
    r.per_class_accuracy.push_back(count > 0 ? sums[c].item<double>() / count : 0.0);
  }
  return r;
}

TrainResult Trainer::run() {
  signals::install_stop_handlers();
  TrainResult result;
  std::int64_t step = 0;
  if (load_checkpoint(result, step))
    log::info("resuming from " + options_.checkpoint_path + " at step " + std::to_string(step));
  result.resumed_from = step;
  const std::int64_t eval_every =
      std::max<std::int64_t>(1, options_.steps / std::max<std::int64_t>(1, options_.num_evals));
  const bool root = !comm_ || comm_->rank() == 0;
  Progress progress("train", options_.steps, "steps",
                    !root || options_.progress == "off" ? Progress::Style::silent : Progress::Style::automatic);
  progress.set_already_done(step);
  const auto start = std::chrono::steady_clock::now();
  for (; step < options_.steps; ++step) {
    const at::Tensor local_loss = train_step(step, result);
    double global_loss = 0;
    const bool stop = agree_stop_and_check_loss(step, local_loss, global_loss);
    result.loss.push_back(global_loss);
    progress.advance(1, "loss " + std::to_string(global_loss).substr(0, 6));
    const bool last = step + 1 == options_.steps;
    if ((step + 1) % eval_every == 0 || last) {
      const auto t = std::chrono::steady_clock::now();
      result.evals.push_back(evaluate(step + 1));
      result.eval_seconds += seconds_since(t);
      const EvalResult& e = result.evals.back();
      if (result.evals.size() == 1 || e.accuracy > result.best.accuracy) result.best = e;
      log::info("step " + std::to_string(step + 1) + ": test accuracy " + std::to_string(e.accuracy) + ", loss " +
                std::to_string(e.loss));
    }
    const bool periodic = options_.checkpoint_every > 0 && (step + 1) % options_.checkpoint_every == 0;
    if (!options_.checkpoint_path.empty() && !last && (periodic || stop)) save_checkpoint(step + 1, result);
    if (stop && !last) {
      result.steps_done = step + 1;
      result.stopped_by_signal = true;
      log::info("train: stopped by signal " + std::to_string(signals::stop_signal()) + "; checkpoint written at step " +
                std::to_string(step + 1) + "; rerun the same command to resume");
      result.train_seconds = seconds_since(start) - result.eval_seconds;
      return result;
    }
  }
  progress.finish();
  result.steps_done = options_.steps;
  result.train_seconds = seconds_since(start) - result.eval_seconds;
  return result;
}

// ---- checkpoints --------------------------------------------------------------------
namespace {
// Archive keys for a buffer's per-rank copies ('.' is a path separator there).
std::string rank_buffer_key(std::string name) {
  std::replace(name.begin(), name.end(), '.', '/');
  return "rank_buffers/" + name;
}
}  // namespace

// Every rank's floating buffers (batch-norm statistics), stacked [world, ...]
// on rank 0. Without synchronised batch norm each replica keeps its own
// statistics until an evaluation averages them; a checkpoint must keep them
// as they are, because averaging here adds a reduction that a run without
// this checkpoint (a stop signal can come at any step) does not make, and
// the resumed run would then differ from it in the last bits.
std::vector<std::pair<std::string, at::Tensor>> Trainer::gather_rank_buffers() {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (auto& item : model_->named_buffers()) {
    if (!at::isFloatingType(item.value().scalar_type())) continue;
    at::Tensor all = comm_ && comm_->size() > 1 ? comm_->gather(item.value(), 0) : item.value().unsqueeze(0);
    out.emplace_back(item.key(), all);
  }
  return out;
}

// This rank's statistics from a checkpoint of the same rank count; from
// another rank count, their mean (what the next evaluation would use).
void Trainer::restore_rank_buffers(torch::serialize::InputArchive& archive) {
  torch::NoGradGuard no_grad;
  const std::int64_t rank = comm_ ? comm_->rank() : 0, world = comm_ ? comm_->size() : 1;
  for (auto& item : model_->named_buffers()) {
    if (!at::isFloatingType(item.value().scalar_type())) continue;
    at::Tensor all;
    if (!archive.try_read(rank_buffer_key(item.key()), all)) continue;  // older checkpoints: rank 0's copy
    if (all.dim() != item.value().dim() + 1 || all.sizes().slice(1) != item.value().sizes())
      throw IoError("checkpoint " + options_.checkpoint_path + ": per-rank buffer " + item.key() + " is " +
                    c10::str(all.sizes()) + ", expected [ranks, " + c10::str(item.value().sizes()).substr(1) +
                    " (delete it to start over)");
    item.value().copy_(all.size(0) == world ? all[rank] : all.mean(0));
  }
}

void Trainer::save_checkpoint(std::int64_t next_step, const TrainResult& result) {
  const auto rank_buffers = gather_rank_buffers();
  if (comm_ && comm_->rank() != 0) {
    comm_->barrier();
    return;
  }
  torch::serialize::OutputArchive archive;
  torch::serialize::OutputArchive model_archive, optim_archive;
  model_->save(model_archive);
  state_->optimizer->save(optim_archive);
  archive.write("model", model_archive);
  archive.write("optimizer", optim_archive);
  archive.write("next_step", at::tensor({next_step}, at::kLong));
  archive.write("world_size", at::tensor({static_cast<std::int64_t>(comm_ ? comm_->size() : 1)}, at::kLong));
  archive.write("loss_scale", at::tensor({state_->loss_scale, static_cast<double>(state_->good_steps)}, at::kDouble));
  archive.write("history/lr", at::tensor(result.lr, at::kDouble));
  archive.write("history/loss", at::tensor(result.loss, at::kDouble));
  const std::int64_t classes = options_.model.num_classes;
  at::Tensor evals = at::zeros({static_cast<std::int64_t>(result.evals.size()), 3 + classes}, at::kDouble);
  for (std::size_t i = 0; i < result.evals.size(); ++i) {
    const EvalResult& e = result.evals[i];
    evals[i][0] = static_cast<double>(e.step);
    evals[i][1] = e.accuracy;
    evals[i][2] = e.loss;
    for (std::int64_t c = 0; c < classes; ++c) evals[i][3 + c] = e.per_class_accuracy[c];
  }
  archive.write("history/evals", evals);
  for (const auto& [name, all] : rank_buffers) archive.write(rank_buffer_key(name), all);
  const std::string tmp = options_.checkpoint_path + ".tmp";
  std::filesystem::path dir = std::filesystem::path(options_.checkpoint_path).parent_path();
  if (!dir.empty()) std::filesystem::create_directories(dir);
  archive.save_to(tmp);
  io::replace_file(tmp, options_.checkpoint_path, "checkpoint");
  if (comm_) comm_->barrier();
}

// Copy (not alias) the checkpoint's weights into the live parameters: they keep
// their allocation, their gradient hooks and the optimiser's references.
void Trainer::restore_model(torch::serialize::InputArchive& archive) {
  ClassifierPtr loaded = make_model(options_.model);
  loaded->load(archive);
  torch::NoGradGuard no_grad;
  auto live = model_->named_parameters(), saved = loaded->named_parameters();
  for (auto& item : live) item.value().copy_(saved[item.key()]);
  auto live_buffers = model_->named_buffers(), saved_buffers = loaded->named_buffers();
  for (auto& item : live_buffers) item.value().copy_(saved_buffers[item.key()]);
}

bool Trainer::load_checkpoint(TrainResult& result, std::int64_t& next_step) {
  if (options_.checkpoint_path.empty() || !std::filesystem::exists(options_.checkpoint_path)) return false;
  torch::serialize::InputArchive archive;
  try {
    // Onto the rank's device: the optimiser's state (momentum, Adam moments)
    // must live where the parameters do.
    archive.load_from(options_.checkpoint_path, device_);
  } catch (const c10::Error& e) {
    throw IoError("cannot read checkpoint " + options_.checkpoint_path + ": " + e.what_without_backtrace() +
                  " (delete it to start over)");
  }
  torch::serialize::InputArchive model_archive, optim_archive;
  archive.read("model", model_archive);
  archive.read("optimizer", optim_archive);
  restore_model(model_archive);
  restore_rank_buffers(archive);
  state_->optimizer->load(optim_archive);
  // One fresh tensor per read: InputArchive::read into a defined tensor calls
  // set_() on it, which keeps the old dtype over the new storage (reading the
  // float64 loss scale into the int64 step tensor gave its bit pattern,
  // 4.6e18, and a resumed run then scaled every loss by it).
  at::Tensor step_tensor, scale;
  archive.read("next_step", step_tensor);
  next_step = step_tensor.item<std::int64_t>();
  archive.read("loss_scale", scale);
  if (scale.scalar_type() != at::kDouble || scale.numel() != 2)
    throw IoError("checkpoint " + options_.checkpoint_path +
                  ": loss_scale is not two float64 values (delete it to start over)");
  state_->loss_scale = scale[0].item<double>();
  state_->good_steps = static_cast<std::int64_t>(scale[1].item<double>());
  at::Tensor lr, loss, evals;
  archive.read("history/lr", lr);
  archive.read("history/loss", loss);
  archive.read("history/evals", evals);
  for (std::int64_t i = 0; i < lr.size(0); ++i) {
    result.steps.push_back(i);
    result.lr.push_back(lr[i].item<double>());
    result.loss.push_back(loss[i].item<double>());
  }
  for (std::int64_t i = 0; i < evals.size(0); ++i) {
    EvalResult e;
    e.step = static_cast<std::int64_t>(evals[i][0].item<double>());
    e.accuracy = evals[i][1].item<double>();
    e.loss = evals[i][2].item<double>();
    for (std::int64_t c = 3; c < evals.size(1); ++c) e.per_class_accuracy.push_back(evals[i][c].item<double>());
    if (result.evals.empty() || e.accuracy > result.best.accuracy) result.best = e;
    result.evals.push_back(e);
  }
  return true;
}

}  // namespace dinv::classify
