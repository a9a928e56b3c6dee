// Image transforms of the method's training recipe, on uint8 [H, W, 3]
// images (as torchvision applies them to PIL images / uint8 tensors), then
// to float [3, H, W] normalised. Every random transform draws from the
// explicit generator it is given: the loader seeds one per example from
// (seed, epoch, position in the epoch), so the result does not depend on
// threads or ranks.
#pragma once

#include <cstdint>
#include <string>

#include <ATen/core/Tensor.h>

#include "dinv/data/rng.h"
#include "dinv/data/subset.h"

namespace dinv::data {

// Bicubic resize of the shorter side to `size` (dinv::io::resize, Pillow's
// arithmetic), then nothing else; keeps the aspect ratio like torchvision's Resize(size).
at::Tensor resize_shorter_side(const at::Tensor& image, std::int64_t size);
at::Tensor center_crop(const at::Tensor& image, std::int64_t height, std::int64_t width);
// torchvision RandomCrop(size, padding): zero padding on every side, then a
// uniformly placed size x size window.
at::Tensor random_crop(const at::Tensor& image, std::int64_t size, std::int64_t padding, Rng& rng);
at::Tensor horizontal_flip(const at::Tensor& image);
at::Tensor random_horizontal_flip(const at::Tensor& image, Rng& rng, double p = 0.5);
// torchvision AutoAugment(AutoAugmentPolicy.CIFAR10) on uint8 tensors: one of
// its 25 sub-policies, each op applied with its probability and magnitude
// (10 bins), signed ops negated with probability 1/2, geometric ops with
// nearest interpolation and zero fill.
at::Tensor auto_augment_cifar10(const at::Tensor& image, Rng& rng);
// One of its ops by torchvision's name ("ShearX", "ShearY", "TranslateX",
// "TranslateY", "Rotate", "Brightness", "Color", "Contrast", "Sharpness",
// "Posterize", "Solarize", "AutoContrast", "Equalize", "Invert") with the
// (signed) magnitude torchvision's _apply_op receives.
at::Tensor auto_augment_op(const at::Tensor& image, const std::string& op, double magnitude);
// uint8 [H, W, 3] -> float [3, H, W]: (x / 255 - mean) / std.
at::Tensor to_normalized_chw(const at::Tensor& image, const MeanStd& norm);

struct TransformOptions {
  std::int64_t resolution = 0;  // > 0: bicubic resize of the shorter side + center crop to this size
  bool train = false;           // random crop / flip / AutoAugment only when training
  bool random_crop = true;
  std::int64_t padding = -1;  // -1: resolution / 8 (the method's res/8)
  bool flip = true;
  bool autoaugment = false;
  MeanStd norm;
};
// The recipe: [resize + center crop] -> (train) random crop with padding ->
// flip -> AutoAugment -> normalise. Returns float [3, R, R].
at::Tensor transform_example(const at::Tensor& image, const TransformOptions& options, Rng& rng);

// Batch-level mixing (float images [B, 3, H, W], labels int64 [B]). The loss
// is lambda * CE(y_a) + (1 - lambda) * CE(y_b), or CE against soft_targets.
struct MixedBatch {
  at::Tensor images;
  at::Tensor labels_a, labels_b;
  double lambda = 1.0;
  at::Tensor soft_targets(std::int64_t num_classes) const;  // float [B, classes], rows sum to 1
};
// MixUp: lambda ~ Beta(alpha, alpha), partner = a random permutation of the batch.
MixedBatch mixup(const at::Tensor& images, const at::Tensor& labels, double alpha, Rng& rng);
// CutMix: lambda ~ Beta(alpha, alpha); a box of area (1 - lambda) H W with a
// uniform centre, clipped to the image, is pasted from the partner; lambda is
// then corrected to the exact pasted area.
MixedBatch cutmix(const at::Tensor& images, const at::Tensor& labels, double alpha, Rng& rng);

}  // namespace dinv::data
