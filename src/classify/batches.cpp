#include "dinv/classify/batches.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include "dinv/core/error.h"
#include "dinv/data/training_data.h"
#include "dinv/dist/partition.h"

namespace dinv::classify {
namespace {

at::Tensor permutation(std::int64_t n, std::uint64_t seed, std::int64_t epoch) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(data::mix_seed({seed, static_cast<std::uint64_t>(epoch)}));
  return at::randperm(n, gen, at::TensorOptions().dtype(at::kLong));
}

// Random crop with zero padding `pad` and a horizontal flip, drawn from the
// example's own generator so that the result does not depend on the rank count.
at::Tensor augment_image(const at::Tensor& chw, std::int64_t pad, std::uint64_t stream) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(stream);
  const auto h = chw.size(1), w = chw.size(2);
  at::Tensor draws = at::randint(0, 2 * pad + 1, {3}, gen, at::kLong);
  at::Tensor padded = at::constant_pad_nd(chw, {pad, pad, pad, pad}, 0.0);
  at::Tensor out = padded.narrow(1, draws[0].item<std::int64_t>(), h).narrow(2, draws[1].item<std::int64_t>(), w);
  return draws[2].item<std::int64_t>() % 2 == 1 ? out.flip({2}) : out;
}

class DatasetBatches final : public BatchSource {
 public:
  DatasetBatches(data::DatasetPtr train, data::DatasetPtr test, const DatasetBatchOptions& o, int rank, int world)
      : train_(std::move(train)), test_(std::move(test)), o_(o), rank_(rank), world_(world) {
    if (!train_ || train_->size() == 0) throw ConfigError("the training set is empty");
    if (!test_ || test_->size() == 0) throw ConfigError("the test set is empty");
    if (o_.global_batch % world_ != 0)
      throw ConfigError("batch size " + std::to_string(o_.global_batch) + " is not divisible by the " +
                        std::to_string(world_) + " ranks of this job (each rank takes batch / ranks)");
    mean_ = at::tensor(std::vector<double>(o_.mean.begin(), o_.mean.end()), at::kFloat).view({3, 1, 1});
    std_ = at::tensor(std::vector<double>(o_.std.begin(), o_.std.end()), at::kFloat).view({3, 1, 1});
  }

  TrainBatch train_batch(std::int64_t step) override {
    const std::int64_t b = o_.global_batch / world_;
    auto indices = batch_indices(train_->size(), o_.seed, o_.global_batch, step, rank_ * b, (rank_ + 1) * b);
    TrainBatch batch;
    std::tie(batch.images, batch.labels) = load(*train_, indices, o_.augment, step);
    return batch;
  }

  void for_each_eval_batch(const EvalFn& fn) override {
    const dist::Range mine = dist::block_of(test_->size(), world_, rank_);
    for (std::int64_t begin = mine.begin; begin < mine.end; begin += o_.eval_batch) {
      std::vector<std::int64_t> indices;
      for (std::int64_t i = begin; i < std::min(mine.end, begin + o_.eval_batch); ++i) indices.push_back(i);
      auto [images, labels] = load(*test_, indices, false, 0);
      fn(images, labels);
    }
  }

 private:
  // Examples -> normalised float [N, 3, H, W] and labels [N].
  std::pair<at::Tensor, at::Tensor> load(const data::Dataset& dataset, const std::vector<std::int64_t>& indices,
                                         bool augment, std::int64_t step) const {
    const auto n = static_cast<std::int64_t>(indices.size());
    const auto res = o_.resolution;
    at::Tensor images = at::empty({n, 3, res, res}, at::kFloat);
    at::Tensor labels = at::empty({n}, at::kLong);
    for (std::int64_t i = 0; i < n; ++i) {
      data::Example ex = dataset.get(indices[i]);
      if (ex.image.dim() != 3 || ex.image.size(0) != res || ex.image.size(1) != res || ex.image.size(2) != 3)
        throw Error("image " + std::to_string(indices[i]) + " of " + dataset.describe() + " has shape " +
                    c10::str(ex.image.sizes()) + ", the model expects [" + std::to_string(res) + ", " +
                    std::to_string(res) + ", 3]");
      at::Tensor chw = ex.image.permute({2, 0, 1}).to(at::kFloat).div_(255.0);
      if (augment)
        chw = augment_image(
            chw, std::max<std::int64_t>(1, res / 8),
            data::mix_seed({o_.seed, static_cast<std::uint64_t>(step), static_cast<std::uint64_t>(indices[i])}));
      images[i].copy_(chw.sub(mean_).div_(std_));
      labels[i] = ex.label;
    }
    return {images, labels};
  }

  data::DatasetPtr train_, test_;
  DatasetBatchOptions o_;
  int rank_, world_;
  at::Tensor mean_, std_;
};

// The data module's loaders. Each loader runs through its own epochs; global
// step s of the run is step s of every loader's stream, so resuming seeks each
// loader to (s / steps_per_epoch, s % steps_per_epoch).
class LoaderBatches final : public BatchSource {
 public:
  LoaderBatches(std::shared_ptr<data::TrainingData> d, std::uint64_t seed) : d_(std::move(d)), seed_(seed) {}

  TrainBatch train_batch(std::int64_t step) override {
    if (step != next_step_) {
      for (data::Loader* l : {d_->train->real(), d_->train->synthetic()})
        if (l) l->seek(step / l->steps_per_epoch(), step % l->steps_per_epoch());
    }
    next_step_ = step + 1;
    data::Batch b = d_->train->next();
    TrainBatch out;
    if (d_->mix == "none") {
      out.images = b.images;
      out.labels = b.labels;
      return out;
    }
    data::Rng rng(data::mix_seed({seed_, 0x6d6978, static_cast<std::uint64_t>(step)}));
    data::MixedBatch m = d_->mix == "mixup" ? data::mixup(b.images, b.labels, d_->mix_alpha, rng)
                                            : data::cutmix(b.images, b.labels, d_->mix_alpha, rng);
    out.images = m.images;
    out.labels = m.labels_a;
    out.labels_b = m.labels_b;
    out.lambda = m.lambda;
    return out;
  }

  void for_each_eval_batch(const EvalFn& fn) override {
    d_->eval->seek(0, 0);
    for (std::int64_t s = 0; s < d_->eval->steps_per_epoch(); ++s) {
      data::Batch b = d_->eval->next();
      if (b.labels.numel() > 0) fn(b.images, b.labels);
    }
  }

 private:
  std::shared_ptr<data::TrainingData> d_;
  std::uint64_t seed_;
  std::int64_t next_step_ = 0;
};

}  // namespace

std::vector<std::int64_t> batch_indices(std::int64_t n, std::uint64_t seed, std::int64_t global_batch,
                                        std::int64_t step, std::int64_t begin, std::int64_t end) {
  std::vector<std::int64_t> out;
  out.reserve(static_cast<std::size_t>(end - begin));
  std::int64_t cached_epoch = -1;
  at::Tensor perm;
  for (std::int64_t j = begin; j < end; ++j) {
    const std::int64_t position = step * global_batch + j;
    const std::int64_t epoch = position / n;
    if (epoch != cached_epoch) {
      perm = permutation(n, seed, epoch);
      cached_epoch = epoch;
    }
    out.push_back(perm.data_ptr<std::int64_t>()[position % n]);
  }
  return out;
}

std::unique_ptr<BatchSource> make_dataset_batches(data::DatasetPtr train, data::DatasetPtr test,
                                                  const DatasetBatchOptions& options, int rank, int world_size) {
  return std::make_unique<DatasetBatches>(std::move(train), std::move(test), options, rank, world_size);
}

std::unique_ptr<BatchSource> make_loader_batches(std::shared_ptr<data::TrainingData> data, std::uint64_t seed) {
  return std::make_unique<LoaderBatches>(std::move(data), seed);
}

}  // namespace dinv::classify
