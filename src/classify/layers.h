// Building blocks shared by the classifier definitions (private to classify).
#pragma once

#include <cstdint>

#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>

#include "batchnorm.h"
#include "dinv/classify/models.h"

namespace dinv::classify::layers {

inline torch::nn::Conv2d conv(std::int64_t in, std::int64_t out, std::int64_t kernel, std::int64_t stride = 1,
                              std::int64_t groups = 1, bool bias = false) {
  return torch::nn::Conv2d(
      torch::nn::Conv2dOptions(in, out, kernel).stride(stride).padding(kernel / 2).groups(groups).bias(bias));
}

// BatchNorm2d that synchronise_batchnorm() can switch to global batch statistics.
inline BatchNorm bn(std::int64_t channels) { return BatchNorm(channels); }

// A Sequential that can itself sit inside a Sequential: LibTorch's
// Sequential::forward is a template, which AnyModule cannot hold; this one
// adds the plain Tensor -> Tensor forward. Parameter names are unchanged.
class StackImpl : public torch::nn::SequentialImpl {
 public:
  using SequentialImpl::SequentialImpl;
  at::Tensor forward(const at::Tensor& x) { return SequentialImpl::forward(x); }
};
TORCH_MODULE(Stack);

enum class Act { none, relu, relu6, silu };

// torchvision's Conv2dNormActivation: conv (no bias), BatchNorm, activation.
inline Stack conv_bn_act(std::int64_t in, std::int64_t out, std::int64_t kernel, std::int64_t stride,
                         std::int64_t groups, Act act) {
  Stack s;
  s->push_back(conv(in, out, kernel, stride, groups));
  s->push_back(bn(out));
  if (act == Act::relu) s->push_back(torch::nn::ReLU(torch::nn::ReLUOptions().inplace(true)));
  if (act == Act::relu6) s->push_back(torch::nn::ReLU6(torch::nn::ReLU6Options().inplace(true)));
  if (act == Act::silu) s->push_back(torch::nn::SiLU());
  return s;
}

// He initialisation of convolutions (fan-out), BatchNorm at identity, linear
// layers at `linear_std` (0: LibTorch's default) -- the torchvision recipes.
void init_weights(torch::nn::Module& model, double linear_std);

}  // namespace dinv::classify::layers
