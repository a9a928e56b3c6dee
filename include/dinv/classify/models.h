// Image classifiers of Stage 3 (docs/method.md, stage 3): ResNet-18/50, VGG-16 (BN),
// MobileNetV2, EfficientNet-B0 and ShuffleNetV2 0.5x, with torchvision-style
// module names and parameter counts, and a resolution-aware stem:
//   resolution <= 32        3x3 stride-1 stem, no max-pool (CIFAR style)
//   32 < resolution <= 128  7x7 stride-2 stem, no max-pool (e.g. STL-10 at 96 px)
//   resolution > 128        the ImageNet stem (7x7 stride-2 + max-pool)
// The stem choice changes strides only, never parameter counts (except VGG's
// classifier head, which is the CIFAR head of 512 -> classes below 64 px).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <torch/nn/module.h>

namespace dinv::dist {
class Communicator;
}

namespace dinv::classify {

// Every classifier maps float images [N, 3, H, W] to logits [N, classes], in
// two parts: the representation the last linear layer sees, [N, D] (512 for
// ResNet-18; what `dinv evaluate` measures distributions in), and that layer.
class ClassifierImpl : public torch::nn::Module {
 public:
  at::Tensor forward(at::Tensor images) { return head(representation(std::move(images))); }
  virtual at::Tensor representation(at::Tensor images) = 0;
  virtual at::Tensor head(at::Tensor representation) = 0;
};
using ClassifierPtr = std::shared_ptr<ClassifierImpl>;

struct ModelSpec {
  std::string name;  // one of model_names()
  std::int64_t num_classes = 10;
  std::int64_t resolution = 32;
};

// "resnet18", "resnet50", "vgg16_bn", "mobilenet_v2", "efficientnet_b0", "shufflenet_v2_x0_5",
// "convnet" (ConvNet-3, width 64: the small CPU-scale classifier of src/classify/convnet.cpp).
const std::vector<std::string>& model_names();
// A freshly initialised model; ModelError for an unknown name or bad sizes.
ClassifierPtr make_model(const ModelSpec& spec);

// How the stem of a model looks at a given resolution.
enum class Stem { cifar, strided, imagenet };
Stem stem_for_resolution(std::int64_t resolution);

// Synchronised BatchNorm (SyncBN): in training mode every BatchNorm layer of
// `model` normalises by the mean and variance of the global batch, all ranks
// of `comm` together, and back-propagates through them (collectives in every
// forward and backward of a BatchNorm layer, so all ranks must run the same
// layers). Null `comm` (or one rank): BatchNorm per rank, the default.
void synchronise_batchnorm(torch::nn::Module& model, dist::Communicator* comm);

std::int64_t parameter_count(const torch::nn::Module& module);

}  // namespace dinv::classify
