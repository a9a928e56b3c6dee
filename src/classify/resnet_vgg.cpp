// ResNet-18/50 and VGG-16 (BN) with the method's resolution-aware stem, the
// model factory and the shared weight initialisation.
#include <torch/nn/init.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/pooling.h>

#include "dinv/core/error.h"
#include "dinv/core/util.h"
#include "layers.h"

namespace dinv::classify {

ClassifierPtr make_mobilenet_v2(const ModelSpec& spec);
ClassifierPtr make_efficientnet_b0(const ModelSpec& spec);
ClassifierPtr make_shufflenet_v2_x0_5(const ModelSpec& spec);
ClassifierPtr make_convnet(const ModelSpec& spec);

namespace {

using layers::bn;
using layers::conv;

// Two 3x3 convolutions (ResNet-18/34).
struct BasicBlockImpl : torch::nn::Module {
  static constexpr std::int64_t expansion = 1;
  BasicBlockImpl(std::int64_t in, std::int64_t planes, std::int64_t stride) {
    conv1 = register_module("conv1", conv(in, planes, 3, stride));
    bn1 = register_module("bn1", bn(planes));
    conv2 = register_module("conv2", conv(planes, planes, 3));
    bn2 = register_module("bn2", bn(planes));
    if (stride != 1 || in != planes * expansion) {
      downsample = register_module(
          "downsample", torch::nn::Sequential(conv(in, planes * expansion, 1, stride), bn(planes * expansion)));
    }
  }
  at::Tensor forward(const at::Tensor& x) {
    at::Tensor out = bn2(conv2(bn1(conv1(x)).relu_()));
    return (out + (downsample ? downsample->forward(x) : x)).relu_();
  }
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr};
  layers::BatchNorm bn1{nullptr}, bn2{nullptr};
  torch::nn::Sequential downsample{nullptr};
};
TORCH_MODULE(BasicBlock);

// 1x1 - 3x3 - 1x1 bottleneck with the stride on the 3x3 (ResNet v1.5, as torchvision).
struct BottleneckImpl : torch::nn::Module {
  static constexpr std::int64_t expansion = 4;
  BottleneckImpl(std::int64_t in, std::int64_t planes, std::int64_t stride) {
    conv1 = register_module("conv1", conv(in, planes, 1));
    bn1 = register_module("bn1", bn(planes));
    conv2 = register_module("conv2", conv(planes, planes, 3, stride));
    bn2 = register_module("bn2", bn(planes));
    conv3 = register_module("conv3", conv(planes, planes * expansion, 1));
    bn3 = register_module("bn3", bn(planes * expansion));
    if (stride != 1 || in != planes * expansion) {
      downsample = register_module(
          "downsample", torch::nn::Sequential(conv(in, planes * expansion, 1, stride), bn(planes * expansion)));
    }
  }
  at::Tensor forward(const at::Tensor& x) {
    at::Tensor out = bn1(conv1(x)).relu_();
    out = bn2(conv2(out)).relu_();
    out = bn3(conv3(out));
    return (out + (downsample ? downsample->forward(x) : x)).relu_();
  }
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, conv3{nullptr};
  layers::BatchNorm bn1{nullptr}, bn2{nullptr}, bn3{nullptr};
  torch::nn::Sequential downsample{nullptr};
};
TORCH_MODULE(Bottleneck);

class ResNetImpl : public ClassifierImpl {
 public:
  template <typename Holder>  // BasicBlock or Bottleneck
  ResNetImpl(const ModelSpec& spec, const std::vector<int>& blocks, Holder*)
      : stem_(stem_for_resolution(spec.resolution)) {
    conv1 = register_module("conv1", stem_ == Stem::cifar ? conv(3, 64, 3, 1) : conv(3, 64, 7, 2));
    bn1 = register_module("bn1", bn(64));
    std::int64_t in = 64;
    const std::int64_t widths[4] = {64, 128, 256, 512};
    for (int i = 0; i < 4; ++i) {
      torch::nn::Sequential layer;
      for (int b = 0; b < blocks[i]; ++b) {
        const std::int64_t stride = (i > 0 && b == 0) ? 2 : 1;
        layer->push_back(Holder(in, widths[i], stride));
        in = widths[i] * Holder::ContainedType::expansion;
      }
      stages_.push_back(register_module("layer" + std::to_string(i + 1), layer));
    }
    fc = register_module("fc", torch::nn::Linear(in, spec.num_classes));
    layers::init_weights(*this, 0.0);
  }
  at::Tensor representation(at::Tensor x) override {
    x = bn1(conv1(x)).relu_();
    if (stem_ == Stem::imagenet) x = at::max_pool2d(x, {3, 3}, {2, 2}, {1, 1});
    for (auto& stage : stages_) x = stage->forward(x);
    return x.mean({2, 3});
  }
  at::Tensor head(at::Tensor x) override { return fc(x); }

 private:
  Stem stem_;
  torch::nn::Conv2d conv1{nullptr};
  layers::BatchNorm bn1{nullptr};
  std::vector<torch::nn::Sequential> stages_;
  torch::nn::Linear fc{nullptr};
};

// VGG-16 with BatchNorm. Below 64 px the feature map is 1x1 after the last
// pooling, so the head is the CIFAR one (512 -> classes); from 64 px up it is
// torchvision's (7x7 adaptive pooling, two 4096-wide layers with dropout).
class Vgg16BnImpl : public ClassifierImpl {
 public:
  explicit Vgg16BnImpl(const ModelSpec& spec) : small_(spec.resolution < 64) {
    const std::vector<int> cfg = {64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0};
    std::int64_t in = 3;
    // At 28 px five poolings would reach 0x0: the last one is skipped there.
    const int pools = spec.resolution < 32 ? 4 : 5;
    int pooled = 0;
    for (int c : cfg) {
      if (c == 0) {
        if (pooled++ < pools) features->push_back(torch::nn::MaxPool2d(torch::nn::MaxPool2dOptions(2).stride(2)));
        continue;
      }
      features->push_back(conv(in, c, 3, 1, 1, /*bias=*/true));
      features->push_back(bn(c));
      features->push_back(torch::nn::ReLU(torch::nn::ReLUOptions().inplace(true)));
      in = c;
    }
    register_module("features", features);
    if (small_) {
      classifier->push_back(torch::nn::Linear(512, spec.num_classes));
    } else {
      classifier->push_back(torch::nn::Linear(512 * 7 * 7, 4096));
      classifier->push_back(torch::nn::ReLU(true));
      classifier->push_back(torch::nn::Dropout(0.5));
      classifier->push_back(torch::nn::Linear(4096, 4096));
      classifier->push_back(torch::nn::ReLU(true));
      classifier->push_back(torch::nn::Dropout(0.5));
      classifier->push_back(torch::nn::Linear(4096, spec.num_classes));
    }
    register_module("classifier", classifier);
    layers::init_weights(*this, 0.01);
  }
  // Every layer of the classifier but the last.
  at::Tensor representation(at::Tensor x) override {
    x = features->forward(x);
    x = (small_ ? at::adaptive_avg_pool2d(x, {1, 1}) : at::adaptive_avg_pool2d(x, {7, 7})).flatten(1);
    auto layer = classifier->begin();
    for (std::size_t i = 0; i + 1 < classifier->size(); ++i, ++layer) x = layer->forward(x);
    return x;
  }
  at::Tensor head(at::Tensor x) override { return (classifier->end() - 1)->forward(x); }

 private:
  bool small_;
  torch::nn::Sequential features, classifier;
};

void check_spec(const ModelSpec& spec) {
  if (spec.num_classes < 1)
    throw ModelError("model '" + spec.name + "': num_classes must be >= 1, got " + std::to_string(spec.num_classes));
  if (spec.resolution < 16)
    throw ModelError("model '" + spec.name + "': resolution must be >= 16 px, got " + std::to_string(spec.resolution));
}

}  // namespace

Stem stem_for_resolution(std::int64_t resolution) {
  if (resolution <= 32) return Stem::cifar;
  if (resolution <= 128) return Stem::strided;
  return Stem::imagenet;
}

const std::vector<std::string>& model_names() {
  static const std::vector<std::string> names = {"resnet18",        "resnet50",           "vgg16_bn", "mobilenet_v2",
                                                 "efficientnet_b0", "shufflenet_v2_x0_5", "convnet"};
  return names;
}

ClassifierPtr make_model(const ModelSpec& spec) {
  check_spec(spec);
  if (spec.name == "resnet18")
    return std::make_shared<ResNetImpl>(spec, std::vector<int>{2, 2, 2, 2}, static_cast<BasicBlock*>(nullptr));
  if (spec.name == "resnet50")
    return std::make_shared<ResNetImpl>(spec, std::vector<int>{3, 4, 6, 3}, static_cast<Bottleneck*>(nullptr));
  if (spec.name == "vgg16_bn") return std::make_shared<Vgg16BnImpl>(spec);
  if (spec.name == "mobilenet_v2") return make_mobilenet_v2(spec);
  if (spec.name == "efficientnet_b0") return make_efficientnet_b0(spec);
  if (spec.name == "shufflenet_v2_x0_5") return make_shufflenet_v2_x0_5(spec);
  if (spec.name == "convnet") return make_convnet(spec);
  std::string known;
  for (const auto& n : model_names()) known += (known.empty() ? "" : ", ") + n;
  throw ModelError("unknown model '" + spec.name + "' (known: " + known + ")");
}

std::int64_t parameter_count(const torch::nn::Module& module) { return dinv::parameter_count(module); }

namespace layers {

void init_weights(torch::nn::Module& model, double linear_std) {
  torch::NoGradGuard no_grad;
  for (auto& m : model.modules(/*include_self=*/false)) {
    if (auto* c = m->as<torch::nn::Conv2d>()) {
      torch::nn::init::kaiming_normal_(c->weight, 0.0, torch::kFanOut, torch::kReLU);
      if (c->bias.defined()) c->bias.zero_();
    } else if (auto* b = m->as<torch::nn::BatchNorm2d>()) {
      b->weight.fill_(1.0);
      b->bias.zero_();
    } else if (auto* l = m->as<torch::nn::Linear>()) {
      if (linear_std > 0) {
        l->weight.normal_(0.0, linear_std);
        l->bias.zero_();
      }
    }
  }
}

}  // namespace layers
}  // namespace dinv::classify
