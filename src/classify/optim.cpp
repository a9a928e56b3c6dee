#include "dinv/classify/optim.h"

#include <algorithm>
#include <cmath>

#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>

#include "dinv/core/error.h"

namespace dinv::classify {

namespace {
constexpr double kFloor = 0.001;  // docs/method.md, stage 3: warm-up from and decay to 0.001x
}

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const std::vector<at::Tensor>& params,
                                                        const OptimizerOptions& o) {
  if (o.name == "sgd") {
    return std::make_unique<torch::optim::SGD>(
        params, torch::optim::SGDOptions(o.lr).momentum(o.momentum).weight_decay(o.weight_decay));
  }
  if (o.name == "adamw") {
    return std::make_unique<torch::optim::AdamW>(
        params, torch::optim::AdamWOptions(o.lr).betas({o.momentum, o.beta2}).eps(o.eps).weight_decay(o.weight_decay));
  }
  throw ConfigError("train.optimizer: unknown optimizer '" + o.name + "' (sgd, adamw)");
}

void set_learning_rate(torch::optim::Optimizer& optimizer, double lr) {
  for (auto& group : optimizer.param_groups()) group.options().set_lr(lr);
}

double lr_factor(std::int64_t step, std::int64_t total_steps, std::int64_t warmup_steps) {
  const double warm =
      warmup_steps > 0 ? std::min(1.0, kFloor + (1.0 - kFloor) * static_cast<double>(step) / warmup_steps) : 1.0;
  const double progress = std::clamp(static_cast<double>(step) / std::max<std::int64_t>(1, total_steps), 0.0, 1.0);
  const double cosine = kFloor + (1.0 - kFloor) * 0.5 * (1.0 + std::cos(M_PI * progress));
  return warm * cosine;
}

}  // namespace dinv::classify
