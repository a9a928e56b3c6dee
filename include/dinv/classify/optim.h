// Optimisers and the learning-rate schedule of Stage 3 (docs/method.md, stage 3): SGD with
// momentum and weight decay (the default) or AdamW; linear warm-up from
// 0.001x over `warmup_steps`, multiplied by a cosine decay to 0.001x over all
// steps.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

namespace torch::optim {
class Optimizer;
}

namespace dinv::classify {

struct OptimizerOptions {
  std::string name = "sgd";  // sgd | adamw
  double lr = 0.1;
  double momentum = 0.9;  // SGD momentum; AdamW's beta1
  double weight_decay = 5e-4;
  double beta2 = 0.999, eps = 1e-8;  // AdamW
};

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const std::vector<at::Tensor>& params,
                                                        const OptimizerOptions& options);
void set_learning_rate(torch::optim::Optimizer& optimizer, double lr);

// The factor multiplying the base learning rate at `step` (0-based) of `total_steps`.
double lr_factor(std::int64_t step, std::int64_t total_steps, std::int64_t warmup_steps);

}  // namespace dinv::classify
