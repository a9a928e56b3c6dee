// The classifiers' BatchNorm (private to classify): LibTorch's BatchNorm2d
// (same parameters, buffers and names), which can be switched to synchronised
// batch statistics over the ranks of a communicator (SyncBN).
#pragma once

#include <torch/nn/modules/batchnorm.h>

namespace dinv::dist {
class Communicator;
}

namespace dinv::classify::layers {

class BatchNormImpl : public torch::nn::BatchNorm2dImpl {
 public:
  using BatchNorm2dImpl::BatchNorm2dImpl;
  // In training mode with a communicator of more than one rank: normalise by
  // the mean and variance of the global batch (all ranks' inputs together),
  // update the running statistics with them, and back-propagate through them
  // (the gradient sums are all-reduced too). Otherwise plain BatchNorm2d.
  at::Tensor forward(const at::Tensor& input);
  void synchronise(dist::Communicator* comm) { comm_ = comm; }

 private:
  dist::Communicator* comm_ = nullptr;
};
TORCH_MODULE(BatchNorm);

}  // namespace dinv::classify::layers
