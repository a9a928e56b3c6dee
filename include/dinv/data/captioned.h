// Captioned image corpora (the pretraining data of a text-to-image model):
// images with one English caption each and no class labels. The layout is the
// Hugging Face ImageFolder one that diffusers' train_text_to_image.py reads:
// ROOT/metadata.jsonl holds one JSON object per line with "file_name" (a path
// relative to ROOT) and "text" (the caption); other keys are ignored, blank
// lines skipped. `dinv data shapes --captioned` writes one (data/shapes.h).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <ATen/core/Tensor.h>

namespace dinv::data {

struct CaptionedExample {
  at::Tensor image;  // uint8 [H, W, 3]
  std::string text;
};

class CaptionedDataset {
 public:
  virtual ~CaptionedDataset() = default;
  virtual std::int64_t size() const = 0;
  virtual CaptionedExample get(std::int64_t index) const = 0;  // thread-safe
  virtual std::int64_t resolution() const = 0;  // every image is resolution x resolution (checked when opened)
  virtual std::string fingerprint()
      const = 0;  // stable identity: format, file list, sizes, content hash of metadata.jsonl
  virtual std::string describe() const = 0;  // "captioned folder corpus/ (20000 images, 32x32)"
};

// Reads ROOT/metadata.jsonl and the header of every image it names (PNG or
// JPEG); pixels are decoded in get(). IoError naming the file and line for: a
// missing metadata.jsonl, a line that is not valid UTF-8 or not a JSON object,
// "file_name" or "text" missing or not strings, a file_name that is absolute,
// empty or leaves ROOT (".."), a duplicate file_name, a missing or
// unreadable image, an image that is not square or not the size of the first
// one, and a corpus without images. The fingerprint does not contain ROOT:
// a moved corpus keeps its identity.
std::shared_ptr<const CaptionedDataset> open_captioned(const std::string& root);

}  // namespace dinv::data
