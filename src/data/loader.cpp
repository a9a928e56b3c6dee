#include "dinv/data/loader.h"

#include <ATen/ATen.h>
#include <c10/util/ParallelGuard.h>

#include "dinv/core/error.h"

namespace dinv::data {

ExampleTransform normalize_only(const MeanStd& norm) {
  return [norm](const at::Tensor& image, Rng&) { return to_normalized_chw(image, norm); };
}

Loader::Loader(DatasetPtr dataset, const SamplerOptions& sampler, ExampleTransform transform,
               const LoaderOptions& options)
    : dataset_(std::move(dataset)), sampler_(sampler), transform_(std::move(transform)), options_(options) {
  if (!dataset_) throw Error("loader: no dataset");
  if (sampler.dataset_size != dataset_->size())
    throw Error("loader: sampler built for " + std::to_string(sampler.dataset_size) + " examples, dataset " +
                dataset_->describe() + " has " + std::to_string(dataset_->size()));
  if (options_.workers < 0 || options_.prefetch < 1)
    throw ConfigError("loader: workers must be >= 0 and prefetch >= 1, found " + std::to_string(options_.workers) +
                      " and " + std::to_string(options_.prefetch));
  start_workers();
}

Loader::~Loader() { stop_workers(); }

Batch Loader::build(std::int64_t epoch, std::int64_t step) const {
  const auto positions = sampler_.positions(step);
  const auto order = sampler_.global_order(epoch);
  std::vector<at::Tensor> images;
  auto labels = at::empty({static_cast<std::int64_t>(positions.size())}, at::kLong);
  auto* y = labels.data_ptr<std::int64_t>();
  for (std::size_t i = 0; i < positions.size(); ++i) {
    const auto example = dataset_->get(order[positions[i]]);
    Rng rng(mix_seed({options_.seed, static_cast<std::uint64_t>(epoch), static_cast<std::uint64_t>(positions[i])}));
    images.push_back(transform_(example.image, rng));
    if (i > 0 && images[i].sizes() != images[0].sizes())
      throw Error("loader: example " + std::to_string(order[positions[i]]) + " of " + dataset_->describe() +
                  " transforms to " + c10::str(images[i].sizes()) + ", the batch's first to " +
                  c10::str(images[0].sizes()) + " (set a training resolution to resize images of different sizes)");
    y[i] = example.label;
  }
  Batch batch;
  // A rank past the end of a short last evaluation batch gets an empty batch.
  batch.images = images.empty() ? at::empty({0, 3, 0, 0}, at::kFloat) : at::stack(images);
  batch.labels = labels;
  batch.epoch = epoch;
  batch.step = step;
  return batch;
}

void Loader::work() {
  // Workers must not each start ATen's intra-op pool: inside this guard
  // at::parallel_for runs inline, so W workers use W cores, not W x threads.
  c10::ParallelGuard serial(true);
  for (;;) {
    std::int64_t step;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      changed_.wait(lock, [&] {
        return stopping_ || (next_claim_ < steps_per_epoch() && next_claim_ < step_ + options_.prefetch);
      });
      if (stopping_) return;
      step = next_claim_++;
    }
    Batch batch;
    std::exception_ptr error;
    try {
      batch = build(epoch_, step);
    } catch (...) {
      error = std::current_exception();
    }
    std::lock_guard<std::mutex> lock(mutex_);
    if (error)
      failed_[step] = error;
    else
      ready_[step] = std::move(batch);
    changed_.notify_all();
  }
}

void Loader::start_workers() {
  next_claim_ = step_;
  stopping_ = false;
  for (int i = 0; i < options_.workers; ++i) threads_.emplace_back([this] { work(); });
}

void Loader::stop_workers() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  for (auto& t : threads_) t.join();
  threads_.clear();
  ready_.clear();
  failed_.clear();
}

void Loader::seek(std::int64_t epoch, std::int64_t step) {
  if (epoch < 0 || step < 0 || step >= steps_per_epoch())
    throw Error("loader: cannot seek to epoch " + std::to_string(epoch) + " step " + std::to_string(step) + " (" +
                std::to_string(steps_per_epoch()) + " steps per epoch)");
  stop_workers();
  epoch_ = epoch;
  step_ = step;
  start_workers();
}

Batch Loader::next() {
  Batch batch;
  if (options_.workers == 0) {
    batch = build(epoch_, step_);
  } else {
    std::unique_lock<std::mutex> lock(mutex_);
    changed_.wait(lock, [&] { return ready_.count(step_) || failed_.count(step_); });
    if (failed_.count(step_)) {
      auto error = failed_[step_];
      lock.unlock();
      std::rethrow_exception(error);
    }
    batch = std::move(ready_[step_]);
    ready_.erase(step_);
  }
  if (step_ + 1 < steps_per_epoch()) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ++step_;
    }
    changed_.notify_all();
  } else {
    seek(epoch_ + 1, 0);
  }
  return batch;
}

MixedLoader::MixedLoader(std::unique_ptr<Loader> real, std::unique_ptr<Loader> synthetic)
    : real_(std::move(real)), synthetic_(std::move(synthetic)) {
  if (!real_ && !synthetic_) throw ConfigError("mixed loader: real_bs and syn_bs are both 0: no images per step");
}

Batch MixedLoader::next() {
  if (!real_) return synthetic_->next();
  if (!synthetic_) return real_->next();
  Batch a = real_->next(), b = synthetic_->next();
  if (a.images.sizes().slice(1) != b.images.sizes().slice(1))
    throw Error("mixed loader: real images " + c10::str(a.images.sizes()) + " and synthetic images " +
                c10::str(b.images.sizes()) + " differ in size (set the same training resolution for both)");
  Batch out;
  out.images = at::cat({a.images, b.images});
  out.labels = at::cat({a.labels, b.labels});
  out.epoch = a.epoch;
  out.step = a.step;
  return out;
}

}  // namespace dinv::data
