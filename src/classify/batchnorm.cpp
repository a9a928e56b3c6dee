// Synchronised BatchNorm over ranks. Forward: every rank's per-channel sums
// are all-reduced into the global batch's mean, then (second collective) the
// sum of squared deviations from that mean, so that the statistics are those
// of a two-pass computation over the global batch, accumulated in float64.
// Backward (the same maths as PyTorch's SyncBatchNorm): with dy the gradient
// of this rank's output, x_hat the normalised input and N the global count,
//   dx = weight * invstd * (dy - sum(dy)/N - x_hat * sum(dy * x_hat)/N)
// where both sums run over the global batch (one all-reduce); the weight and
// bias gradients are this rank's own sums, as the data-parallel gradient
// average then turns them into the global batch's gradient.
#include "batchnorm.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <torch/csrc/autograd/custom_function.h>

#include "dinv/classify/models.h"
#include "dinv/core/error.h"
#include "dinv/dist/communicator.h"

namespace dinv::classify {
namespace layers {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

// [C] -> broadcastable against [N, C, ...].
at::Tensor per_channel(const at::Tensor& t, std::int64_t dims) {
  std::vector<std::int64_t> shape(static_cast<std::size_t>(dims), 1);
  shape[1] = t.size(0);
  return t.view(shape);
}

std::vector<std::int64_t> reduce_dims(const at::Tensor& x) {
  std::vector<std::int64_t> d{0};
  for (std::int64_t i = 2; i < x.dim(); ++i) d.push_back(i);
  return d;
}

// The communicator, as autograd's saved_data holds it (IValues only); the
// layer that made the graph owns neither, the trainer owns both.
struct CommunicatorRef final : torch::CustomClassHolder {
  explicit CommunicatorRef(dist::Communicator* c) : comm(c) {}
  dist::Communicator* comm;
};

struct SyncBatchNormFunction : public torch::autograd::Function<SyncBatchNormFunction> {
  // mean and invstd are the global batch's (computed from the detached input),
  // count its number of values per channel (float64 [1], on the device: no
  // host synchronisation); the gradient through mean and invstd is part of
  // backward below.
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                            const at::Tensor& mean, const at::Tensor& invstd, const at::Tensor& count,
                            dist::Communicator* comm) {
    const auto d = x.dim();
    at::Tensor scale = invstd * weight;
    at::Tensor y = (x - per_channel(mean, d)) * per_channel(scale, d) + per_channel(bias, d);
    ctx->save_for_backward({x, weight, mean, invstd, count});
    ctx->saved_data["comm"] = c10::IValue::make_capsule(c10::make_intrusive<CommunicatorRef>(comm));
    return y;
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &weight = saved[1], &mean = saved[2], &invstd = saved[3], &count = saved[4];
    auto* comm = c10::static_intrusive_pointer_cast<CommunicatorRef>(ctx->saved_data["comm"].toCapsule())->comm;
    const at::Tensor dy = grads[0].contiguous();
    const auto d = x.dim();
    const auto dims = reduce_dims(x);
    at::Tensor x_hat = (x - per_channel(mean, d)) * per_channel(invstd, d);
    at::Tensor sum_dy = dy.sum(dims, false, at::kDouble);
    at::Tensor sum_dy_xhat = (dy * x_hat).sum(dims, false, at::kDouble);
    // This rank's sums: the data-parallel average makes them the global ones.
    at::Tensor grad_weight = sum_dy_xhat.to(weight.scalar_type());
    at::Tensor grad_bias = sum_dy.to(weight.scalar_type());
    at::Tensor sums = at::cat({sum_dy, sum_dy_xhat});
    comm->all_reduce(sums);
    const auto channels = x.size(1);
    at::Tensor mean_dy = (sums.narrow(0, 0, channels) / count).to(x.scalar_type());
    at::Tensor mean_dy_xhat = (sums.narrow(0, channels, channels) / count).to(x.scalar_type());
    at::Tensor dx =
        (dy - per_channel(mean_dy, d) - x_hat * per_channel(mean_dy_xhat, d)) * per_channel(invstd * weight, d);
    return {dx, grad_weight, grad_bias, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor BatchNormImpl::forward(const at::Tensor& input) {
  if (!comm_ || comm_->size() == 1 || !is_training()) return BatchNorm2dImpl::forward(input);
  if (!options.affine() || !options.track_running_stats())
    throw Error("synchronised BatchNorm needs affine parameters and running statistics");
  if (input.dim() < 2 || input.size(1) != options.num_features())
    throw Error("BatchNorm: expected input [N, " + std::to_string(options.num_features()) + ", ...], got " +
                c10::str(input.sizes()));
  const auto d = input.dim();
  const auto dims = reduce_dims(input);
  const auto channels = input.size(1);
  at::Tensor mean, var, count;
  {
    at::NoGradGuard no_grad;
    const at::Tensor x = input.detach();
    // Collective 1: [count, sum per channel]; collective 2: sum of squared deviations.
    const std::int64_t local_count = x.numel() / channels;
    at::Tensor sums = at::cat({at::full({1}, static_cast<double>(local_count), x.options().dtype(at::kDouble)),
                               x.sum(dims, false, at::kDouble)});
    comm_->all_reduce(sums);
    count = sums.narrow(0, 0, 1);
    // Asked of the host only where this rank alone has fewer than 2 values.
    if (local_count < 2 && count.item<double>() < 2)
      throw Error("synchronised BatchNorm: fewer than 2 values per channel in the global batch");
    at::Tensor mean64 = sums.narrow(0, 1, channels) / count;
    at::Tensor m2 = (x.to(at::kDouble) - per_channel(mean64, d)).square().sum(dims);
    comm_->all_reduce(m2);
    at::Tensor var64 = m2 / count;  // biased: normalisation
    mean = mean64.to(input.scalar_type());
    var = var64.to(input.scalar_type());
    // Running statistics as BatchNorm2d keeps them: momentum, unbiased variance.
    num_batches_tracked += 1;
    const double momentum =
        options.momentum().has_value() ? *options.momentum() : 1.0 / num_batches_tracked.item<double>();
    running_mean.mul_(1 - momentum).add_(mean64.to(running_mean.scalar_type()), momentum);
    running_var.mul_(1 - momentum).add_((var64 * (count / (count - 1))).to(running_var.scalar_type()), momentum);
  }
  at::Tensor invstd = (var + options.eps()).rsqrt();
  return SyncBatchNormFunction::apply(input, weight, bias, mean, invstd, count, comm_);
}

}  // namespace layers

void synchronise_batchnorm(torch::nn::Module& model, dist::Communicator* comm) {
  for (auto& m : model.modules(/*include_self=*/true))
    if (auto* bn = dynamic_cast<layers::BatchNormImpl*>(m.get())) bn->synchronise(comm);
}

}  // namespace dinv::classify
