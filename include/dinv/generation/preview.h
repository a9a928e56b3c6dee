// `dinv generate --preview N`: a PNG for a person to look at, made from a tag
// of the store after the stage has run. The first N finished samples in index
// order, grouped by source image (by class for per-class prompts, whose
// source tile is grey): each row is the source image (from the
// dataset, resized to the saved size) then up to kPreviewPerRow of its
// samples, exactly as stored.
#pragma once

#include <cstdint>
#include <string>

#include "dinv/io/resize.h"

namespace dinv::data {
class Dataset;
}

namespace dinv::generation {

// Layout of the grid, in pixels (tests locate tiles with these).
constexpr std::int64_t kPreviewPerRow = 8;     // samples per row at most
constexpr std::int64_t kPreviewSeparator = 1;  // white line around and between tiles
constexpr std::int64_t kPreviewSourceGap = 3;  // white gap between the source and its samples

struct PreviewRequest {
  std::string store_path, tag;
  std::int64_t chunk_size = 0;  // generate.chunk_size, for tags that do not record their own
  std::int64_t count = 0;       // N >= 1
  io::ResizeFilter filter = io::ResizeFilter::bicubic;
  std::string out_path;  // "" : <store_path>.preview/<tag>.png
};

struct PreviewResult {
  std::string path;
  std::int64_t samples = 0, rows = 0;
};

// Reads the store on this process alone (call it on one rank, with the store
// closed by the stage). `dataset` gives the source images; it must be the one
// the store was embedded from (checked by fingerprint). Fewer than N finished
// samples: a preview of those with a warning; none, or no such tag: StoreError.
PreviewResult write_preview(const PreviewRequest& request, const data::Dataset& dataset);

}  // namespace dinv::generation
