// The synthetic images of a dinv store (/samples/<tag>), read serially: all of
// them, or those a run's selection keeps (the samples of its real subset's
// images by the store's provenance, so many per source, so many in all).
#include <ATen/ATen.h>

#include <algorithm>
#include <filesystem>
#include <map>

#include "dinv/core/error.h"
#include "dinv/core/log.h"
#include "dinv/data/readers.h"
#include "dinv/data/rng.h"
#include "dinv/store/h5.h"

namespace dinv::data {
namespace {

std::string hash_text(const std::string& text, const std::string& seed) {
  return content_hash(text.data(), text.size(), seed);
}

std::string optional_string(const h5::Object& obj, const std::string& name) {
  return obj.has_attribute(name) ? obj.string_attribute(name) : "";
}

// A half-generated tag would give a run fewer (and other) samples than the
// same command gives after generate finishes: refuse it rather than train on it.
void require_finished(const h5::File& file, const std::string& group) {
  const std::string& store_path = file.file_path();
  if (!file.exists(group + "/done"))
    throw StoreError("store '" + store_path + "' /" + group + " has no ledger /" + group +
                     "/done: the tag was never finished; rerun 'dinv generate' for it");
  const auto done = file.open_dataset(group + "/done").read_all();
  const auto finished = done.ne(0).sum().item<std::int64_t>();
  if (finished != done.numel())
    throw StoreError("store '" + store_path + "' /" + group + ": only " + std::to_string(finished) + " of " +
                     std::to_string(done.numel()) + " chunks are finished (/" + group +
                     "/done); rerun 'dinv generate' with the same settings to finish "
                     "the tag before training on it");
}

// The store of syn.root, which must exist (HDF5's own message for a missing
// file is a stack of four errors).
h5::File open_store(const std::string& store_path) {
  std::error_code ec;
  if (!std::filesystem::exists(store_path, ec))
    throw StoreError("store '" + store_path +
                     "' does not exist (syn.root names a store that dinv generate or dinv retrieve wrote)");
  return h5::File::open_serial(store_path);
}

// samples/<tag>, which must exist.
std::string tag_group(const h5::File& file, const std::string& tag) {
  const std::string group = "samples/" + tag;
  if (!file.exists("samples") || !file.exists(group))
    throw StoreError("store '" + file.file_path() + "' has no /" + group + " (tag '" + tag + "' was never generated)");
  return group;
}

std::vector<std::int64_t> read_sources(const h5::File& file, const std::string& group, std::int64_t count) {
  if (!file.exists(group + "/source"))
    throw StoreError("store '" + file.file_path() + "' has no /" + group +
                     "/source (the samples' source images), which " + "syn.follow_real and syn.per_source need");
  const auto ds = file.open_dataset(group + "/source");
  ds.require_layout(at::kLong, {count});
  const auto t = ds.read_all().contiguous();
  return std::vector<std::int64_t>(t.data_ptr<std::int64_t>(), t.data_ptr<std::int64_t>() + t.numel());
}

// The given rows (ascending) of a dataset. A selection of most rows reads the
// dataset whole and keeps the rows (one contiguous read); a sparse one (a
// sweep task's small real subset of a large tag) reads only its runs of
// consecutive rows, so a task holds its selection, not the tag, in memory.
at::Tensor read_selected_rows(const h5::File& file, const std::string& path, const std::vector<std::int64_t>& rows) {
  const auto ds = file.open_dataset(path);
  const auto dims = ds.dims();
  if (dims.empty() || 2 * static_cast<std::int64_t>(rows.size()) > dims[0])  // (read_all refuses a scalar)
    return ds.read_all().index_select(0, at::tensor(rows, at::kLong));
  std::vector<at::Tensor> runs;
  for (std::size_t first = 0; first < rows.size();) {
    std::size_t last = first;
    while (last + 1 < rows.size() && rows[last + 1] == rows[last] + 1) ++last;
    runs.push_back(ds.read_rows(rows[first], rows[last] + 1));
    first = last + 1;
  }
  if (runs.empty()) return ds.read_rows(0, 0);
  return runs.size() == 1 ? runs[0] : at::cat(runs);
}

// Rows of one tag kept by follow_real and per_source (ascending).
std::vector<std::int64_t> select_rows(const std::vector<std::int64_t>& source, const std::string& tag,
                                      const SampleSelection& sel) {
  std::map<std::int64_t, std::int64_t> taken;  // source image -> samples kept so far
  std::vector<std::int64_t> rows;
  for (std::size_t m = 0; m < source.size(); ++m) {
    const auto src = source[m];
    if (src < 0)
      throw ConfigError("tag '" + tag + "' holds per-class prompt samples (no source image, /samples/" + tag +
                        "/source = -1): they cannot follow the real subset or be counted per source image; set "
                        "syn.follow_real = false and syn.per_source = 0 for it (syn.total still applies)");
    if (sel.follow_real && !std::binary_search(sel.real_indices.begin(), sel.real_indices.end(), src)) continue;
    auto& n = taken[src];
    if (sel.per_source > 0 && n >= sel.per_source) continue;
    ++n;
    rows.push_back(static_cast<std::int64_t>(m));
  }
  if (sel.follow_real && sel.per_source == 0) {
    std::int64_t without = 0;
    for (auto src : sel.real_indices) without += taken.count(src) == 0 ? 1 : 0;
    if (without > 0)
      log::warn_job(
          "tag '" + tag + "': " + std::to_string(without) + " of the " + std::to_string(sel.real_indices.size()) +
          " images of the real subset have no samples (embed.num_images?); their share of the synthetic data is "
          "missing");
  }
  if (sel.per_source > 0) {
    // Every image the selection stands for must have its full share.
    std::int64_t short_images = 0, example = -1, example_count = 0;
    auto check = [&](std::int64_t src) {
      const auto it = taken.find(src);
      const auto n = it == taken.end() ? 0 : it->second;
      if (n < sel.per_source) {
        if (short_images++ == 0) example = src, example_count = n;
      }
    };
    if (sel.follow_real)
      for (auto src : sel.real_indices) check(src);
    else
      for (const auto& [src, n] : taken) check(src);
    if (short_images > 0)
      throw ConfigError("syn.per_source = " + std::to_string(sel.per_source) + " but tag '" + tag + "' has only " +
                        std::to_string(example_count) + " sample(s) of real image " + std::to_string(example) + " (" +
                        std::to_string(short_images) + " source image(s) have fewer than " +
                        std::to_string(sel.per_source) + "; generate.num_samples, embed.num_images)");
  }
  return rows;
}

// syn.total: `total` of the kept samples, uniformly without replacement, ascending per tag.
void draw_total(std::vector<std::vector<std::int64_t>>& rows, const std::vector<std::string>& tags,
                const SampleSelection& sel) {
  std::vector<std::pair<std::size_t, std::int64_t>> all;
  for (std::size_t t = 0; t < rows.size(); ++t)
    for (auto r : rows[t]) all.emplace_back(t, r);
  const auto available = static_cast<std::int64_t>(all.size());
  if (sel.total > available) {
    std::string names;
    for (const auto& t : tags) names += (names.empty() ? "" : ",") + t;
    throw ConfigError("syn.total = " + std::to_string(sel.total) + " but the selection of tag(s) " + names +
                      " has only " + std::to_string(available) + " samples" +
                      (sel.follow_real ? " whose source image is in the real subset" : ""));
  }
  Rng rng(mix_seed({sel.seed, 0x5E1EC7ull}));
  for (std::int64_t i = 0; i < sel.total; ++i)  // partial Fisher-Yates, as subset_indices draws groups
    std::swap(all[i], all[i + static_cast<std::int64_t>(rng.below(static_cast<std::uint64_t>(available - i)))]);
  all.resize(static_cast<std::size_t>(sel.total));
  std::sort(all.begin(), all.end());
  for (auto& r : rows) r.clear();
  for (const auto& [t, r] : all) rows[t].push_back(r);
}

}  // namespace

void require_finished_tags(const std::string& store_path, const std::vector<std::string>& tags) {
  h5::quiet_errors();
  const auto file = open_store(store_path);
  for (const auto& tag : tags) require_finished(file, tag_group(file, tag));
}

StoreSamples select_store_samples(const std::string& store_path, const std::vector<std::string>& tags,
                                  const SampleSelection& sel) {
  if (tags.empty()) throw IoError("store '" + store_path + "': no sample tags given (data key 'tags')");
  h5::quiet_errors();
  auto file = open_store(store_path);
  if (!file.exists("source"))
    throw StoreError("store '" + store_path + "': no /source group (class names live in its attribute 'class_names')");
  const auto source_group = file.open_group("source");
  auto names = source_group.strings_attribute("class_names");
  const std::string dataset_fp = optional_string(source_group, "dataset_fingerprint");
  if (sel.follow_real && dataset_fp != sel.real_fingerprint)
    throw StoreError("store '" + store_path + "' was generated from other images than the real data: its /source " +
                     "dataset_fingerprint is '" + dataset_fp +
                     "', the real data (data.format, data.root, data.split) is '" + sel.real_fingerprint +
                     "'. syn.follow_real selects samples by their source image's index in the "
                     "real dataset, which needs the store made from that dataset (or set syn.follow_real = false)");
  const bool by_source = sel.follow_real || sel.per_source > 0;
  StoreSamples out;
  out.tags = tags;
  out.fingerprint = hash_text(dataset_fp, "");
  std::vector<at::Tensor> images, labels;
  for (const auto& tag : tags) {
    const std::string group = tag_group(file, tag);
    // Shapes and dtypes first: the extents come from the file.
    const auto xd = file.open_dataset(group + "/images");
    xd.require_layout(at::kByte, {-1, -1, -1, 3});
    const auto count = xd.dims()[0];
    const auto yd = file.open_dataset(group + "/label");
    const auto ydims = yd.dims();
    if (ydims.size() != 1 || ydims[0] != count)
      throw StoreError("store '" + store_path + "' /" + group + "/label is " + c10::str(c10::IntArrayRef(ydims)) +
                       ", expected one label per image [" + std::to_string(count) + "]");
    require_finished(file, group);
    std::vector<std::int64_t> rows;
    if (by_source) {
      rows = select_rows(read_sources(file, group, count), tag, sel);
    } else {
      rows.resize(static_cast<std::size_t>(count));
      for (std::int64_t m = 0; m < count; ++m) rows[static_cast<std::size_t>(m)] = m;
    }
    out.rows.push_back(std::move(rows));
    // The tag's identity: what generated it (settings, model) and its name.
    const auto g = file.open_group(group);
    out.fingerprint = hash_text(
        tag + "\n" + optional_string(g, "settings") + "\n" + optional_string(g, "model_fingerprint"), out.fingerprint);
  }
  if (sel.total > 0) draw_total(out.rows, tags, sel);
  std::string hash, tag_list;
  for (std::size_t t = 0; t < tags.size(); ++t) {
    const std::string group = "samples/" + tags[t];
    const auto& rows = out.rows[t];
    out.fingerprint = content_hash(rows.data(), rows.size() * sizeof(std::int64_t), out.fingerprint);
    auto x = read_selected_rows(file, group + "/images", rows);
    auto y = read_selected_rows(file, group + "/label", rows);
    if (!images.empty() && x.sizes().slice(1) != images[0].sizes().slice(1))
      throw StoreError("store '" + store_path + "' /" + group + ": images " + c10::str(x.sizes()) +
                       " differ in size from the first tag's " + c10::str(images[0].sizes()));
    x = x.contiguous();
    hash = content_hash(x.data_ptr(), x.numel(), hash);
    images.push_back(x);
    labels.push_back(y.to(at::kLong));
    tag_list += (tag_list.empty() ? "" : ",") + tags[t];
  }
  auto x = at::cat(images);
  out.count = x.size(0);
  if (out.count == 0)
    throw ConfigError("no synthetic images selected from tag(s) " + tag_list + " of '" + store_path + "'" +
                      (sel.follow_real ? ": no sample's source image lies in the real subset (data.num_data, "
                                         "data.subset_seed; embed.num_images)"
                                       : ""));
  const std::string desc = "store samples " + tag_list + " (" + std::to_string(x.size(0)) + " images, " +
                           std::to_string(x.size(1)) + "x" + std::to_string(x.size(2)) + ", " + store_path + ")";
  out.dataset = std::make_shared<TensorDataset>(
      x, at::cat(labels), names, "store:" + tag_list + ":n=" + std::to_string(x.size(0)) + ":" + hash, desc);
  return out;
}

DatasetPtr open_store_samples(const std::string& store_path, const std::vector<std::string>& tags) {
  return select_store_samples(store_path, tags, SampleSelection{}).dataset;
}

}  // namespace dinv::data
