#include "dinv/generation/preview.h"

#include <algorithm>
#include <filesystem>
#include <system_error>
#include <vector>

#include <ATen/ATen.h>

#include "dinv/core/error.h"
#include "dinv/core/log.h"
#include "dinv/data/dataset.h"
#include "dinv/dist/partition.h"
#include "dinv/dist/world.h"
#include "dinv/generation/generate.h"
#include "dinv/io/png.h"
#include "dinv/store/store.h"

namespace dinv::generation {

namespace {

// The chosen samples: their rows in the tag, images and source indices.
struct Chosen {
  std::vector<std::int64_t> rows;
  at::Tensor images;                 // uint8 [n, H, W, 3]
  std::vector<std::int64_t> source;  // store row of each sample's source image (-1: none)
  std::vector<std::int64_t> label;   // rows without a source (per-class prompts) group by class
};

// The first `count` samples of finished chunks, in index order.
Chosen choose(store::Store& st, const std::string& group, const PreviewRequest& r) {
  const std::string images_name = group + "/images";
  const h5::Dataset images = st.dataset(images_name);
  images.require_layout(at::kByte, {-1, -1, -1, 3});
  const auto total = images.dims().at(0);
  const auto chunk_size = tag_chunk_size(st, group, r.chunk_size);
  const auto chunks = dist::chunk_count(total, chunk_size);
  store::UnitLedger ledger(st, group, chunks);
  Chosen out;
  std::vector<at::Tensor> parts;
  const h5::Dataset source = st.dataset(group + "/source"), label = st.dataset(group + "/label");
  source.require_layout(at::kLong, {total});
  label.require_layout(at::kLong, {total});
  for (std::int64_t c = 0; c < chunks && static_cast<std::int64_t>(out.rows.size()) < r.count; ++c) {
    if (!ledger.is_done(c)) continue;
    const auto range = dist::chunk(total, chunk_size, c);
    const auto end = std::min(range.end, range.begin + r.count - static_cast<std::int64_t>(out.rows.size()));
    parts.push_back(images.read_rows(range.begin, end));
    const at::Tensor s = source.read_rows(range.begin, end);
    out.source.insert(out.source.end(), s.data_ptr<std::int64_t>(), s.data_ptr<std::int64_t>() + s.numel());
    const at::Tensor l = label.read_rows(range.begin, end);
    out.label.insert(out.label.end(), l.data_ptr<std::int64_t>(), l.data_ptr<std::int64_t>() + l.numel());
    for (auto i = range.begin; i < end; ++i) out.rows.push_back(i);
  }
  if (out.rows.empty())
    throw StoreError("store '" + st.path() + "', " + group + ": no finished samples to preview (0 of " +
                     std::to_string(chunks) + " chunks done): run 'dinv generate' with this configuration first");
  out.images = at::cat(parts);
  return out;
}

// Source images of the chosen samples at the samples' size, from the dataset
// the store was embedded from; grey where a sample has no source image.
std::vector<at::Tensor> source_tiles(const store::Store& st, const Chosen& c, const data::Dataset& dataset,
                                     io::ResizeFilter filter) {
  const auto h = c.images.size(1), w = c.images.size(2);
  const bool any = std::any_of(c.source.begin(), c.source.end(), [](std::int64_t s) { return s >= 0; });
  if (any)
    st.require_attribute("/source", "dataset_fingerprint", dataset.fingerprint(),
                         "The preview shows the source images of [data]: point data.* at the dataset the store "
                         "was embedded from.");
  at::Tensor index;
  if (any) {
    const h5::Dataset d = st.dataset("/source/index");
    d.require_layout(at::kLong, {-1});
    index = d.read_all();
  }
  std::vector<at::Tensor> tiles;
  for (const auto s : c.source) {
    if (s < 0) {
      tiles.push_back(at::full({h, w, 3}, 128, at::kByte));
      continue;
    }
    if (s >= index.size(0))
      throw StoreError("store '" + st.path() + "': a sample's source is row " + std::to_string(s) +
                       ", but /source/index has " + std::to_string(index.size(0)) + " rows");
    at::Tensor image = dataset.get(index[s].item<std::int64_t>()).image;
    if (image.size(0) != h || image.size(1) != w) image = io::resize(image, h, w, filter);
    tiles.push_back(image);
  }
  return tiles;
}

// One row of the grid: a source and up to kPreviewPerRow of its samples.
struct Row {
  std::int64_t first = 0, count = 0;  // positions in Chosen
};

std::vector<Row> rows_of(const Chosen& c) {
  std::vector<Row> rows;
  for (std::int64_t i = 0; i < static_cast<std::int64_t>(c.rows.size()); ++i) {
    const auto u = static_cast<std::size_t>(i);
    const bool continues = !rows.empty() && c.source[u] == c.source[u - 1] && c.label[u] == c.label[u - 1] &&
                           c.rows[u] == c.rows[u - 1] + 1 && rows.back().count < kPreviewPerRow;
    if (continues)
      ++rows.back().count;
    else
      rows.push_back({i, 1});
  }
  return rows;
}

at::Tensor compose(const Chosen& c, const std::vector<at::Tensor>& sources, const std::vector<Row>& rows) {
  const auto h = c.images.size(1), w = c.images.size(2);
  std::int64_t per_row = 0;
  for (const auto& r : rows) per_row = std::max(per_row, r.count);
  const auto sep = kPreviewSeparator;
  const auto height = sep + static_cast<std::int64_t>(rows.size()) * (h + sep);
  const auto width = sep + w + kPreviewSourceGap + per_row * (w + sep);
  at::Tensor grid = at::full({height, width, 3}, 255, at::kByte);
  auto tile = [&](std::int64_t y, std::int64_t x) { return grid.narrow(0, y, h).narrow(1, x, w); };
  for (std::size_t r = 0; r < rows.size(); ++r) {
    const auto y = sep + static_cast<std::int64_t>(r) * (h + sep);
    tile(y, sep).copy_(sources[static_cast<std::size_t>(rows[r].first)]);
    for (std::int64_t k = 0; k < rows[r].count; ++k)
      tile(y, sep + w + kPreviewSourceGap + k * (w + sep)).copy_(c.images[rows[r].first + k]);
  }
  return grid;
}

void make_parent(const std::string& path) {
  const auto parent = std::filesystem::path(path).parent_path();
  if (parent.empty()) return;
  std::error_code ec;
  std::filesystem::create_directories(parent, ec);
  if (ec) throw IoError("cannot create the folder '" + parent.string() + "' of the preview: " + ec.message());
}

}  // namespace

PreviewResult write_preview(const PreviewRequest& r, const data::Dataset& dataset) {
  if (r.count < 1) throw Error("preview of " + std::to_string(r.count) + " samples: N must be at least 1");
  const std::string group = "/samples/" + r.tag;
  auto st = store::Store::open(r.store_path, dist::Comm::this_rank_only(), false);
  if (!st.has(group)) throw StoreError("store '" + r.store_path + "' has no " + group + " to preview");
  const Chosen chosen = choose(st, group, r);
  const auto sources = source_tiles(st, chosen, dataset, r.filter);
  st.close();
  const auto rows = rows_of(chosen);
  PreviewResult out;
  out.path = r.out_path.empty() ? r.store_path + ".preview/" + r.tag + ".png" : r.out_path;
  out.samples = static_cast<std::int64_t>(chosen.rows.size());
  out.rows = static_cast<std::int64_t>(rows.size());
  if (out.samples < r.count)
    log::warn("preview: only " + std::to_string(out.samples) + " of the " + std::to_string(r.count) +
              " samples asked for are finished in " + r.store_path + ":" + group);
  make_parent(out.path);
  io::write_png(out.path, compose(chosen, sources, rows));
  return out;
}

}  // namespace dinv::generation
