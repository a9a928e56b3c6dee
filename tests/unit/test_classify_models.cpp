// Classifier definitions: parameter counts equal torchvision's definitions
// (1000 classes at 224 px), the CIFAR ResNet-18 of the method, and forward
// shapes at every resolution the method uses.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include "dinv/classify/models.h"
#include "dinv/core/error.h"

using namespace dinv::classify;

namespace {
std::int64_t count(const std::string& name, std::int64_t classes, std::int64_t resolution) {
  return parameter_count(*make_model({name, classes, resolution}));
}
}  // namespace

TEST(ClassifyModels, CifarResNet18HasTheReferenceParameterCount) { EXPECT_EQ(count("resnet18", 10, 32), 11173962); }

// torchvision.models.<name>(num_classes=1000) parameter counts.
TEST(ClassifyModels, ImageNetParameterCountsMatchTorchvision) {
  EXPECT_EQ(count("resnet18", 1000, 224), 11689512);
  EXPECT_EQ(count("resnet50", 1000, 224), 25557032);
  EXPECT_EQ(count("vgg16_bn", 1000, 224), 138365992);
  EXPECT_EQ(count("mobilenet_v2", 1000, 224), 3504872);
  EXPECT_EQ(count("efficientnet_b0", 1000, 224), 5288548);
  EXPECT_EQ(count("shufflenet_v2_x0_5", 1000, 224), 1366792);
}

TEST(ClassifyModels, CifarVggHeadIsTheSmallOne) {
  // 14,714,688 convolution + 8,448 BatchNorm + 5,130 linear parameters.
  EXPECT_EQ(count("vgg16_bn", 10, 32), 14728266);
}

// ConvNet-3: three 3x3 convolutions with bias (3->64, 64->64, 64->64), three
// BatchNorm layers, and a linear layer on the flattened (R/8)^2 x 64 map.
TEST(ClassifyModels, ConvNetHasItsParameterCount) {
  const std::int64_t convolutions = (3 * 9 + 1) * 64 + 2 * (64 * 9 + 1) * 64, batchnorm = 3 * 2 * 64;
  EXPECT_EQ(count("convnet", 10, 32), convolutions + batchnorm + 64 * 4 * 4 * 10 + 10);
  EXPECT_EQ(count("convnet", 10, 16), convolutions + batchnorm + 64 * 2 * 2 * 10 + 10);
  auto model = make_model({"convnet", 10, 16});
  model->eval();
  EXPECT_EQ(model->representation(at::randn({3, 3, 16, 16})).sizes(), at::IntArrayRef({3, 256}));
}

TEST(ClassifyModels, StemDependsOnResolution) {
  EXPECT_EQ(stem_for_resolution(28), Stem::cifar);
  EXPECT_EQ(stem_for_resolution(32), Stem::cifar);
  EXPECT_EQ(stem_for_resolution(64), Stem::strided);
  EXPECT_EQ(stem_for_resolution(96), Stem::strided);
  EXPECT_EQ(stem_for_resolution(256), Stem::imagenet);
  auto cifar = make_model({"resnet18", 10, 32});
  auto stl = make_model({"resnet18", 10, 96});
  EXPECT_EQ(cifar->named_parameters()["conv1.weight"].sizes(), at::IntArrayRef({64, 3, 3, 3}));
  EXPECT_EQ(stl->named_parameters()["conv1.weight"].sizes(), at::IntArrayRef({64, 3, 7, 7}));
  EXPECT_TRUE(cifar->named_parameters().contains("layer2.0.downsample.0.weight"));
  EXPECT_TRUE(cifar->named_parameters().contains("fc.bias"));
}

TEST(ClassifyModels, EveryModelRunsAtSmallResolutions) {
  for (const auto& name : model_names()) {
    for (std::int64_t res : {28, 32}) {
      auto model = make_model({name, 7, res});
      model->eval();
      at::Tensor out = model->forward(at::randn({2, 3, res, res}));
      EXPECT_EQ(out.sizes(), at::IntArrayRef({2, 7})) << name << " at " << res;
    }
  }
}

TEST(ClassifyModels, ResNetRunsAtStlResolution) {
  auto model = make_model({"resnet18", 10, 96});
  model->eval();
  EXPECT_EQ(model->forward(at::randn({1, 3, 96, 96})).sizes(), at::IntArrayRef({1, 10}));
}

TEST(ClassifyModels, BadSpecsAreModelErrors) {
  EXPECT_THROW(make_model({"resnet19", 10, 32}), dinv::ModelError);
  EXPECT_THROW(make_model({"resnet18", 0, 32}), dinv::ModelError);
  EXPECT_THROW(make_model({"resnet18", 10, 4}), dinv::ModelError);
}
