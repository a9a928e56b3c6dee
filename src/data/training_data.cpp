#include "dinv/core/seed.h"
#include "dinv/data/training_data.h"

#include <sstream>

#include "dinv/core/config.h"
#include "dinv/core/error.h"
#include "dinv/core/util.h"
#include "dinv/data/formats.h"
#include "dinv/data/subset.h"

namespace dinv::data {
namespace {

// The method's per-dataset statistics; folders default to ImageNet's.
std::string normalization_name(const Config& config) {
  const auto chosen = config.get_string("data.normalize");
  if (chosen != "auto") return chosen;
  return dataset_format(config.get_string("data.format")).normalize;
}

LoaderOptions loader_options(const Config& config, std::uint64_t seed) {
  LoaderOptions o;
  o.workers = static_cast<int>(config.get_int("data.workers"));
  o.prefetch = static_cast<int>(config.get_int("data.prefetch"));
  o.seed = seed;
  return o;
}

SamplerOptions sampler_options(DatasetPtr dataset, std::int64_t batch, int rank, int world, std::uint64_t seed,
                               bool train) {
  SamplerOptions s;
  s.dataset_size = dataset->size();
  s.batch_size = batch;
  s.rank = rank;
  s.world_size = world;
  s.seed = seed;
  s.shuffle = train;
  s.drop_last = train;
  return s;
}

void require_same_classes(const DatasetPtr& a, const DatasetPtr& b) {
  if (a && b && a->class_names() != b->class_names())
    throw ConfigError("class names differ: " + a->describe() + " has " + std::to_string(a->class_names().size()) +
                      " classes, " + b->describe() + " has " + std::to_string(b->class_names().size()) +
                      " (or other names): real, synthetic and test data must share one label space");
}

std::int64_t per_rank(const Config& config, const std::string& key, int world) {
  const auto total = config.get_int(key);
  if (total % world != 0)
    config.reject(key, "the global batch must divide evenly over the " + std::to_string(world) + " ranks");
  return total / world;
}

// Evaluation sees every test image once whatever the split of a batch (no
// drop_last), so its global batch is only a memory bound: each rank takes its
// rounded-up share, and any rank count runs with any data.eval_bs.
std::int64_t eval_per_rank(const Config& config, int world) {
  return (config.get_int("data.eval_bs") + world - 1) / world;
}

std::string real_selection_fingerprint(const Dataset& base, const std::vector<std::int64_t>& indices) {
  return content_hash(indices.data(), indices.size() * sizeof(std::int64_t),
                      content_hash(base.fingerprint().data(), base.fingerprint().size()));
}

// Store samples as syn.follow_real / per_source / total select them.
void open_store_samples(const Config& config, const DatasetPtr& base, TrainingData& d) {
  if (config.get_string("syn.tags").find_first_not_of(", ") == std::string::npos)
    config.reject("syn.tags", "format 'store' needs at least one sample tag");
  if (config.get_string("syn.root").empty()) config.reject("syn.root", "format 'store' needs the path of its files");
  SampleSelection sel;
  sel.follow_real = d.follow_real;
  sel.per_source = d.per_source;
  sel.total = d.total;
  sel.seed = static_cast<std::uint64_t>(config.get_int("data.subset_seed"));
  if (sel.follow_real) {
    sel.real_indices = d.real_indices;
    sel.real_fingerprint = base->fingerprint();
  }
  d.store_samples = select_store_samples(config.get_string("syn.root"), split_list(config.get_string("syn.tags")), sel);
  d.synthetic = d.store_samples.dataset;
}

// The real subset and the synthetic images. With syn.follow_real the real
// dataset is opened also for synthetic-only runs: its subset picks the samples.
void open_train_sets(const Config& config, bool real, bool syn, TrainingData& d) {
  const bool store = syn && config.get_string("syn.format") == "store";
  d.follow_real = store && config.get_bool("syn.follow_real");
  d.per_source = config.get_int("syn.per_source");
  d.total = config.get_int("syn.total");
  if (!store && syn && (d.per_source > 0 || d.total > 0))
    config.reject(d.per_source > 0 ? "syn.per_source" : "syn.total",
                  "selects samples of a store: needs syn.format = store");
  if (real || d.follow_real) {
    const auto base = make_dataset(config, "data");
    d.real_indices = subset_indices(base->size(), config);
    d.real_fingerprint = real_selection_fingerprint(*base, d.real_indices);
    if (real) d.real = apply_subset_options(base, config);
    if (store) open_store_samples(config, base, d);
  } else if (store) {
    open_store_samples(config, nullptr, d);
  }
  if (syn && !store) d.synthetic = make_dataset(config, "syn");
  if (syn && !d.synthetic) config.reject("syn.format", "data.syn_bs > 0 needs synthetic images (syn.format is 'none')");
}

}  // namespace

TransformOptions transform_options(const Config& config, bool train) {
  TransformOptions o;
  o.resolution = config.get_int("data.resolution");
  o.train = train;
  const auto augment = config.get_string("data.augment");
  o.random_crop = o.flip = augment != "none";
  o.autoaugment = augment == "autoaugment";
  o.norm = mean_std(normalization_name(config));
  return o;
}

TrainingData make_training_data(const Config& config, int rank, int world_size) {
  TrainingData d;
  const auto seed = run_seed(config);
  const auto real_bs = per_rank(config, "data.real_bs", world_size),
             syn_bs = per_rank(config, "data.syn_bs", world_size);
  if (real_bs == 0 && syn_bs == 0)
    config.reject("data.syn_bs", "data.real_bs and data.syn_bs are both 0: no training images");
  open_train_sets(config, real_bs > 0, syn_bs > 0, d);
  d.test = make_dataset(config.get_string("data.format"), config.get_string("data.root"), "test",
                        config.get_string("data.labels"));
  require_same_classes(d.real, d.synthetic);
  require_same_classes(d.real ? d.real : d.synthetic, d.test);
  d.num_classes = static_cast<std::int64_t>(d.test->class_names().size());

  const auto train_transform = make_example_transform(transform_options(config, true));
  std::unique_ptr<Loader> real, syn;
  if (d.real)  // separate sampler and augmentation streams for the two sources
    real =
        std::make_unique<Loader>(d.real, sampler_options(d.real, real_bs, rank, world_size, mix_seed({seed, 1}), true),
                                 train_transform, loader_options(config, mix_seed({seed, 2})));
  if (d.synthetic)
    syn = std::make_unique<Loader>(d.synthetic,
                                   sampler_options(d.synthetic, syn_bs, rank, world_size, mix_seed({seed, 3}), true),
                                   train_transform, loader_options(config, mix_seed({seed, 4})));
  d.train = std::make_unique<MixedLoader>(std::move(real), std::move(syn));
  d.eval = std::make_unique<Loader>(
      d.test, sampler_options(d.test, eval_per_rank(config, world_size), rank, world_size, 0, false),
      make_example_transform(transform_options(config, false)), loader_options(config, 0));
  d.mix = config.get_string("data.mix");
  d.mix_alpha = config.get_real("data.mix_alpha");
  return d;
}

}  // namespace dinv::data
