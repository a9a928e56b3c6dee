// AdamW over a list of tensors, written out so that its whole state (moments
// and step count) is plain tensors that checkpoints save and restore exactly.
// The update is PyTorch's torch.optim.AdamW (decoupled weight decay, bias
// corrections), which is what the method's code uses.
#pragma once

#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>

namespace dinv::inversion {

struct AdamWOptions {
  double lr = 3e-2, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 1e-2;
};

class AdamW {
 public:
  AdamW(std::vector<at::Tensor> params, AdamWOptions options);
  // One update from each parameter's .grad(); parameters without a gradient are skipped.
  void step();
  void zero_grad();

  std::int64_t steps_taken() const { return step_; }
  std::vector<at::Tensor>& exp_avg() { return exp_avg_; }
  std::vector<at::Tensor>& exp_avg_sq() { return exp_avg_sq_; }
  void set_steps_taken(std::int64_t s) { step_ = s; }

 private:
  std::vector<at::Tensor> params_, exp_avg_, exp_avg_sq_;
  AdamWOptions options_;
  std::int64_t step_ = 0;
};

}  // namespace dinv::inversion
