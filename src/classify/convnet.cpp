// ConvNet-3, the small classifier of the data-centric literature (dataset
// condensation and distillation benchmarks): three blocks of 3x3 convolution
// -> BatchNorm -> ReLU -> 2x2 average pooling, then one linear layer on the
// flattened map. Width 64 keeps a training step a few milliseconds on a CPU,
// which is what a sweep of dozens of runs on a laptop-sized machine needs
// (the main job's sample-complexity sweep); the large models above are for
// the paper's settings.
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/pooling.h>

#include "layers.h"

namespace dinv::classify {
namespace {

using layers::conv;
using layers::Stack;

constexpr std::int64_t kWidth = 64;
constexpr int kBlocks = 3;

class ConvNetImpl : public ClassifierImpl {
 public:
  explicit ConvNetImpl(const ModelSpec& spec) {
    std::int64_t in = 3, side = spec.resolution;
    for (int b = 0; b < kBlocks; ++b) {
      features->push_back(conv(in, kWidth, 3, 1, 1, /*bias=*/true));
      features->push_back(layers::bn(kWidth));
      features->push_back(torch::nn::ReLU(torch::nn::ReLUOptions().inplace(true)));
      features->push_back(torch::nn::AvgPool2d(torch::nn::AvgPool2dOptions(2).stride(2)));
      in = kWidth;
      side /= 2;
    }
    register_module("features", features);
    // [N, 64, R/8, R/8] flattened: the map keeps where things are, as the
    // literature's ConvNet does (no global pooling).
    classifier = register_module("classifier", torch::nn::Linear(kWidth * side * side, spec.num_classes));
    layers::init_weights(*this, 0.0);
  }
  // [N, 3, R, R] -> [N, 64 * (R/8)^2]
  at::Tensor representation(at::Tensor x) override { return features->forward(x).flatten(1); }
  at::Tensor head(at::Tensor x) override { return classifier->forward(x); }

 private:
  Stack features;
  torch::nn::Linear classifier{nullptr};
};

}  // namespace

ClassifierPtr make_convnet(const ModelSpec& spec) { return std::make_shared<ConvNetImpl>(spec); }

}  // namespace dinv::classify
