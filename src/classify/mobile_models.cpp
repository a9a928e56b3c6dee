// MobileNetV2, EfficientNet-B0 and ShuffleNetV2 0.5x as torchvision defines
// them (same parameter counts). At CIFAR resolutions (<= 32 px) the stride-2
// stem (and ShuffleNet's max-pool) becomes stride 1, as the ResNet stem does,
// so that the last feature map is not smaller than 1x1.
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>

#include "layers.h"

namespace dinv::classify {
namespace {

using layers::Act;
using layers::conv_bn_act;

std::int64_t stem_stride(const ModelSpec& spec) { return stem_for_resolution(spec.resolution) == Stem::cifar ? 1 : 2; }

// ---- MobileNetV2 ---------------------------------------------------------------
struct InvertedResidualImpl : torch::nn::Module {
  InvertedResidualImpl(std::int64_t in, std::int64_t out, std::int64_t stride, std::int64_t expand)
      : residual(stride == 1 && in == out) {
    const std::int64_t hidden = in * expand;
    if (expand != 1) conv->push_back(conv_bn_act(in, hidden, 1, 1, 1, Act::relu6));
    conv->push_back(conv_bn_act(hidden, hidden, 3, stride, hidden, Act::relu6));
    conv->push_back(layers::conv(hidden, out, 1));
    conv->push_back(layers::bn(out));
    register_module("conv", conv);
  }
  at::Tensor forward(const at::Tensor& x) { return residual ? x + conv->forward(x) : conv->forward(x); }
  bool residual;
  layers::Stack conv;
};
TORCH_MODULE(InvertedResidual);

class MobileNetV2Impl : public ClassifierImpl {
 public:
  explicit MobileNetV2Impl(const ModelSpec& spec) {
    // expansion t, channels c, repeats n, first stride s (the paper's table 2).
    const int settings[7][4] = {{1, 16, 1, 1}, {6, 24, 2, 2},  {6, 32, 3, 2}, {6, 64, 4, 2},
                                {6, 96, 3, 1}, {6, 160, 3, 2}, {6, 320, 1, 1}};
    features->push_back(conv_bn_act(3, 32, 3, stem_stride(spec), 1, Act::relu6));
    std::int64_t in = 32;
    for (const auto& s : settings) {
      for (int i = 0; i < s[2]; ++i) {
        features->push_back(InvertedResidual(in, s[1], i == 0 ? s[3] : 1, s[0]));
        in = s[1];
      }
    }
    features->push_back(conv_bn_act(in, 1280, 1, 1, 1, Act::relu6));
    register_module("features", features);
    classifier->push_back(torch::nn::Dropout(0.2));
    classifier->push_back(torch::nn::Linear(1280, spec.num_classes));
    register_module("classifier", classifier);
    layers::init_weights(*this, 0.01);
  }
  at::Tensor representation(at::Tensor x) override { return features->forward(x).mean({2, 3}); }
  at::Tensor head(at::Tensor x) override { return classifier->forward(x); }

 private:
  torch::nn::Sequential features, classifier;
};

// ---- EfficientNet-B0 --------------------------------------------------------------
// Squeeze-and-excitation on the expanded channels, squeezed to a quarter of the
// block's input channels (torchvision's choice).
struct SqueezeExcitationImpl : torch::nn::Module {
  SqueezeExcitationImpl(std::int64_t channels, std::int64_t squeezed) {
    fc1 = register_module("fc1", layers::conv(channels, squeezed, 1, 1, 1, true));
    fc2 = register_module("fc2", layers::conv(squeezed, channels, 1, 1, 1, true));
  }
  at::Tensor forward(const at::Tensor& x) {
    at::Tensor scale = fc2(at::silu(fc1(x.mean({2, 3}, /*keepdim=*/true)))).sigmoid();
    return x * scale;
  }
  torch::nn::Conv2d fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE(SqueezeExcitation);

// Stochastic depth of torchvision's recipe is left out (a regulariser, no parameters).
struct MBConvImpl : torch::nn::Module {
  MBConvImpl(std::int64_t in, std::int64_t out, std::int64_t kernel, std::int64_t stride, std::int64_t expand)
      : residual(stride == 1 && in == out) {
    const std::int64_t hidden = in * expand;
    if (expand != 1) block->push_back(conv_bn_act(in, hidden, 1, 1, 1, Act::silu));
    block->push_back(conv_bn_act(hidden, hidden, kernel, stride, hidden, Act::silu));
    block->push_back(SqueezeExcitation(hidden, std::max<std::int64_t>(1, in / 4)));
    block->push_back(conv_bn_act(hidden, out, 1, 1, 1, Act::none));
    register_module("block", block);
  }
  at::Tensor forward(const at::Tensor& x) { return residual ? x + block->forward(x) : block->forward(x); }
  bool residual;
  layers::Stack block;
};
TORCH_MODULE(MBConv);

class EfficientNetB0Impl : public ClassifierImpl {
 public:
  explicit EfficientNetB0Impl(const ModelSpec& spec) {
    // expansion, kernel, stride, in, out, repeats (EfficientNet-B0, width and depth 1.0).
    const int stages[7][6] = {{1, 3, 1, 32, 16, 1},  {6, 3, 2, 16, 24, 2},  {6, 5, 2, 24, 40, 2},
                              {6, 3, 2, 40, 80, 3},  {6, 5, 1, 80, 112, 3}, {6, 5, 2, 112, 192, 4},
                              {6, 3, 1, 192, 320, 1}};
    features->push_back(conv_bn_act(3, 32, 3, stem_stride(spec), 1, Act::silu));
    for (const auto& s : stages) {
      layers::Stack stage;
      for (int i = 0; i < s[5]; ++i)
        stage->push_back(MBConv(i == 0 ? s[3] : s[4], s[4], s[1], i == 0 ? s[2] : 1, s[0]));
      features->push_back(stage);
    }
    features->push_back(conv_bn_act(320, 1280, 1, 1, 1, Act::silu));
    register_module("features", features);
    classifier->push_back(torch::nn::Dropout(0.2));
    classifier->push_back(torch::nn::Linear(1280, spec.num_classes));
    register_module("classifier", classifier);
    layers::init_weights(*this, 0.0);
  }
  at::Tensor representation(at::Tensor x) override { return features->forward(x).mean({2, 3}); }
  at::Tensor head(at::Tensor x) override { return classifier->forward(x); }

 private:
  torch::nn::Sequential features, classifier;
};

// ---- ShuffleNetV2 ------------------------------------------------------------------
at::Tensor interleave_channels(const at::Tensor& x, std::int64_t groups) {
  const auto n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  return x.view({n, groups, c / groups, h, w}).transpose(1, 2).contiguous().view({n, c, h, w});
}

struct ShuffleUnitImpl : torch::nn::Module {
  ShuffleUnitImpl(std::int64_t in, std::int64_t out, std::int64_t stride) : stride(stride) {
    const std::int64_t half = out / 2;
    if (stride > 1) {
      branch1->push_back(conv_bn_act(in, in, 3, stride, in, Act::none));
      branch1->push_back(conv_bn_act(in, half, 1, 1, 1, Act::relu));
      register_module("branch1", branch1);
    }
    branch2->push_back(conv_bn_act(stride > 1 ? in : half, half, 1, 1, 1, Act::relu));
    branch2->push_back(conv_bn_act(half, half, 3, stride, half, Act::none));
    branch2->push_back(conv_bn_act(half, half, 1, 1, 1, Act::relu));
    register_module("branch2", branch2);
  }
  at::Tensor forward(const at::Tensor& x) {
    at::Tensor out;
    if (stride == 1) {
      auto halves = x.chunk(2, 1);
      out = at::cat({halves[0], branch2->forward(halves[1])}, 1);
    } else {
      out = at::cat({branch1->forward(x), branch2->forward(x)}, 1);
    }
    return interleave_channels(out, 2);
  }
  std::int64_t stride;
  layers::Stack branch1, branch2;
};
TORCH_MODULE(ShuffleUnit);

class ShuffleNetV2Impl : public ClassifierImpl {
 public:
  explicit ShuffleNetV2Impl(const ModelSpec& spec) : cifar_(stem_for_resolution(spec.resolution) == Stem::cifar) {
    const std::int64_t widths[5] = {24, 48, 96, 192, 1024};  // the 0.5x width
    const int repeats[3] = {4, 8, 4};
    conv1 = register_module("conv1", conv_bn_act(3, widths[0], 3, cifar_ ? 1 : 2, 1, Act::relu));
    std::int64_t in = widths[0];
    for (int s = 0; s < 3; ++s) {
      layers::Stack stage;
      for (int i = 0; i < repeats[s]; ++i)
        stage->push_back(ShuffleUnit(i == 0 ? in : widths[s + 1], widths[s + 1], i == 0 ? 2 : 1));
      in = widths[s + 1];
      stages_.push_back(register_module("stage" + std::to_string(s + 2), stage));
    }
    conv5 = register_module("conv5", conv_bn_act(in, widths[4], 1, 1, 1, Act::relu));
    fc = register_module("fc", torch::nn::Linear(widths[4], spec.num_classes));
    layers::init_weights(*this, 0.0);
  }
  at::Tensor representation(at::Tensor x) override {
    x = conv1->forward(x);
    if (!cifar_) x = at::max_pool2d(x, {3, 3}, {2, 2}, {1, 1});
    for (auto& s : stages_) x = s->forward(x);
    return conv5->forward(x).mean({2, 3});
  }
  at::Tensor head(at::Tensor x) override { return fc(x); }

 private:
  bool cifar_;
  layers::Stack conv1{nullptr}, conv5{nullptr};
  std::vector<layers::Stack> stages_;
  torch::nn::Linear fc{nullptr};
};

}  // namespace

ClassifierPtr make_mobilenet_v2(const ModelSpec& spec) { return std::make_shared<MobileNetV2Impl>(spec); }
ClassifierPtr make_efficientnet_b0(const ModelSpec& spec) { return std::make_shared<EfficientNetB0Impl>(spec); }
ClassifierPtr make_shufflenet_v2_x0_5(const ModelSpec& spec) { return std::make_shared<ShuffleNetV2Impl>(spec); }

}  // namespace dinv::classify
