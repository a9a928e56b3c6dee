#include "dinv/classify/data_parallel.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#include "dinv/core/error.h"
#include "dinv/core/signals.h"

namespace dinv::classify {
namespace {

// Runs after AccumulateGrad wrote the parameter's .grad (a PyTorch >= 2.1 hook).
class ReadyHook final : public torch::autograd::PostAccumulateGradHook {
 public:
  ReadyHook(GradientBuckets& owner, std::size_t index) : owner_(owner), index_(index) {}
  void operator()(const torch::autograd::Variable&) override { owner_.on_gradient_ready(index_); }

 private:
  GradientBuckets& owner_;
  std::size_t index_;
};

double seconds_between(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

}  // namespace

GradientBuckets::GradientBuckets(std::vector<at::Tensor> params, dist::Communicator& comm, std::int64_t bucket_bytes)
    : params_(std::move(params)), comm_(comm) {
  if (bucket_bytes < 1) throw ConfigError("gradient bucket size must be positive, got " + std::to_string(bucket_bytes));
  bucket_of_.assign(params_.size(), 0);
  slot_of_.assign(params_.size(), 0);
  seen_.assign(params_.size(), false);
  // Reverse order: the last layers' gradients are ready first in backward.
  std::int64_t filled = 0;
  for (std::size_t k = params_.size(); k-- > 0;) {
    const at::Tensor& p = params_[k];
    const std::int64_t bytes = p.numel() * static_cast<std::int64_t>(p.element_size());
    if (buckets_.empty() || (filled + bytes > bucket_bytes && !buckets_.back().params.empty())) {
      buckets_.emplace_back();
      filled = 0;
    }
    Bucket& b = buckets_.back();
    bucket_of_[k] = buckets_.size() - 1;
    slot_of_[k] = b.params.size();
    b.offsets.push_back(b.params.empty() ? 0 : b.offsets.back() + params_[b.params.back()].numel());
    b.params.push_back(k);
    filled += bytes;
  }
  for (Bucket& b : buckets_) {
    const std::int64_t total = b.offsets.back() + params_[b.params.back()].numel();
    b.flat = at::zeros({total}, params_[b.params.front()].options().requires_grad(false));
  }
  for (std::size_t k = 0; k < params_.size(); ++k)
    torch::autograd::impl::set_post_acc_grad_hooks(params_[k], std::make_unique<ReadyHook>(*this, k));
}

GradientBuckets::~GradientBuckets() {
  for (auto& p : params_) torch::autograd::impl::set_post_acc_grad_hooks(p, nullptr);
}

void GradientBuckets::begin_step() {
  std::lock_guard<std::mutex> lock(mutex_);
  for (Bucket& b : buckets_) {
    b.pending = b.params.size();
    b.launched = false;
    b.work.reset();
  }
  seen_.assign(params_.size(), false);
  next_launch_ = 0;
  timings_.clear();
}

void GradientBuckets::on_gradient_ready(std::size_t index) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (seen_[index]) return;  // a parameter used twice in one graph
  seen_[index] = true;
  Bucket& b = buckets_[bucket_of_[index]];
  const at::Tensor& grad = params_[index].grad();
  b.flat.narrow(0, b.offsets[slot_of_[index]], grad.numel()).copy_(grad.reshape(-1));
  --b.pending;
  launch_ready_buckets();
}

void GradientBuckets::launch_ready_buckets() {
  while (next_launch_ < buckets_.size() && buckets_[next_launch_].pending == 0) launch(buckets_[next_launch_++]);
}

void GradientBuckets::launch(Bucket& b) {
  // Pre-divide so that the sum over ranks is the mean.
  if (comm_.size() > 1) b.flat.div_(static_cast<double>(comm_.size()));
  b.started = std::chrono::steady_clock::now();
  b.work = comm_.all_reduce_async(b.flat, dist::ReduceOp::sum);
  b.launched = true;
}

void GradientBuckets::finish_step() {
  const auto backward_end = std::chrono::steady_clock::now();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    // Parameters that took no part in this loss contribute zero gradients.
    for (std::size_t k = 0; k < params_.size(); ++k) {
      if (seen_[k]) continue;
      seen_[k] = true;
      Bucket& b = buckets_[bucket_of_[k]];
      b.flat.narrow(0, b.offsets[slot_of_[k]], params_[k].numel()).zero_();
      --b.pending;
    }
    launch_ready_buckets();
  }
  for (std::size_t i = 0; i < buckets_.size(); ++i) {
    Bucket& b = buckets_[i];
    b.work->wait();
    const auto done = std::chrono::steady_clock::now();
    timings_.push_back({static_cast<std::int64_t>(i), b.flat.numel() * static_cast<std::int64_t>(b.flat.element_size()),
                        seconds_between(backward_end, b.started), seconds_between(backward_end, done)});
    for (std::size_t s = 0; s < b.params.size(); ++s) {
      at::Tensor& p = params_[b.params[s]];
      at::Tensor slice = b.flat.narrow(0, b.offsets[s], p.numel()).view(p.sizes());
      if (p.grad().defined()) {
        p.mutable_grad().copy_(slice);
      } else {
        p.mutable_grad() = slice.clone();
      }
    }
  }
}

std::vector<BucketTiming> GradientBuckets::last_timings() const { return timings_; }

StepAgreement agree_on_step(dist::Communicator* comm, const at::Tensor& local_loss) {
  const auto options = local_loss.options().dtype(at::kDouble);
  at::Tensor t = at::cat({local_loss.detach().to(at::kDouble).reshape({1}),
                          at::full({1}, signals::stop_requested() ? 1.0 : 0.0, options)});
  if (comm) comm->all_reduce(t);
  t = t.cpu();  // the step's one host synchronisation
  return {t[0].item<double>() / (comm ? comm->size() : 1), t[1].item<double>() > 0};
}

}  // namespace dinv::classify
