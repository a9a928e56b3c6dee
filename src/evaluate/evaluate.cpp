#include "dinv/evaluate/evaluate.h"

#include <algorithm>
#include <set>

#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include "dinv/classify/saved_model.h"
#include "dinv/core/config.h"
#include "dinv/core/error.h"
#include "dinv/core/log.h"
#include "dinv/core/progress.h"
#include "dinv/core/util.h"
#include "dinv/data/loader.h"
#include "dinv/data/readers.h"
#include "dinv/data/rng.h"
#include "dinv/data/subset.h"
#include "dinv/data/transforms.h"
#include "dinv/dist/communicator.h"
#include "dinv/dist/partition.h"
#include "dinv/dist/world.h"
#include "dinv/evaluate/metrics.h"
#include "dinv/store/stored_settings.h"
#include "dinv/store/store.h"

namespace dinv::evaluate {

namespace {

// Every evaluate setting, once, in the order of the help and the stored
// configuration. Text positions order a tag's metrics settings text
// ("classifier=... k=3 max_images=0 leak_ratio=0.1", byte for byte as before
// the declaration): /metrics/<tag> written with the same text is not
// measured again.
settings::Declaration<EvaluateSettings> declare_evaluate_settings() {
  using S = EvaluateSettings;
  settings::Declaration<S> d("evaluate");
  d.add("evaluate.classifier", &S::classifier, "folder of a classifier kept by dinv train (train.save_model = true)");
  d.add("evaluate.tags", &S::tag_list, "comma-separated /samples/<tag> to measure (empty: syn.tags)");
  d.add("evaluate.k", &S::k, "nearest neighbours of precision, recall, density and coverage").min(1).changes(1);
  d.add("evaluate.batch_size", &S::batch_size, "images per forward pass and per work unit").min(1);
  d.add("evaluate.max_images", &S::max_images, "use the first N images of each set (0: all)").min(0).changes(2);
  // Spelled with 6 significant digits, as /metrics written before the declaration.
  d.add("evaluate.leak_ratio", &S::leak_ratio,
        "a test image counts as leaked when a generated image is closer than this times the median distance "
        "between test images and their nearest other test image")
      .greater_than(0)
      .changes(3)
      .spelled([](const S& s) { return settings::short_text(s.leak_ratio); });
  d.derived("classifier", &S::classifier_fingerprint, "the classifier's fingerprint")
      .changes(0)
      .stored(0, "classifier_fingerprint");
  return d;
}

}  // namespace

const settings::Declaration<EvaluateSettings>& evaluate_declaration() {
  static const auto declaration = declare_evaluate_settings();
  return declaration;
}

void register_evaluate_options(ConfigSchema& s) { evaluate_declaration().register_options(s); }

EvaluateSettings evaluate_settings(const Config& c) {
  auto s = evaluate_declaration().read(c);
  if (s.classifier.empty())
    c.reject("evaluate.classifier",
             "name the folder of a classifier kept by dinv train "
             "(train.save_model = true)");
  s.tags = split_list(s.tag_list);
  if (s.tags.empty()) s.tags = split_list(c.get_string("syn.tags"));
  if (s.tags.empty()) c.reject("evaluate.tags", "no tag to measure: set evaluate.tags (or syn.tags)");
  return s;
}

namespace {

// What the classifier sees of a set of images, on every rank.
struct SetFeatures {
  at::Tensor representation;  // float [n, D]
  at::Tensor predicted;       // int64 [n]
  at::Tensor label;           // int64 [n]
};

class FeatureModel {
 public:
  FeatureModel(classify::LoadedClassifier loaded, const EvaluateSettings& s, dist::World& world,
               dist::Communicator& comm)
      : loaded_(std::move(loaded)), settings_(s), world_(world), comm_(comm) {
    loaded_.model->to(world.device());
    transform_.resolution = loaded_.info.spec.resolution;
    transform_.train = false;
    transform_.norm.mean = loaded_.info.mean;
    transform_.norm.std = loaded_.info.std;
    torch::NoGradGuard no_grad;
    const auto probe = at::zeros({1, 3, transform_.resolution, transform_.resolution}, world.device());
    width_ = loaded_.model->representation(probe).size(1);
  }

  const classify::LoadedClassifier& classifier() const { return loaded_; }

  // The first `count` images of `d`, in work units of batch_size spread over
  // the ranks; each rank fills its rows and a sum gives every rank all rows.
  SetFeatures of(const data::Dataset& d, std::int64_t count, const std::string& what) {
    torch::NoGradGuard no_grad;
    // On the rank's device: the sum goes through the communicator (NCCL reduces device tensors only).
    const auto on_device = at::TensorOptions(world_.device()).dtype(at::kFloat);
    auto rep = at::zeros({count, width_}, on_device), out = at::zeros({count, 2}, on_device);
    const auto units = dist::chunk_count(count, settings_.batch_size);
    const auto mine = dist::units_of_rank(units, world_.size(), world_.rank());
    Progress progress("evaluate: features of " + what + " (rank 0)", count, "images",
                      world_.is_root() ? Progress::Style::automatic : Progress::Style::silent);
    for (auto u : mine) {
      const auto r = dist::chunk(count, settings_.batch_size, u);
      std::vector<at::Tensor> images;
      std::vector<float> labels;
      for (auto i = r.begin; i < r.end; ++i) {
        const auto example = d.get(i);
        data::Rng unused(0);
        images.push_back(data::transform_example(example.image, transform_, unused));
        labels.push_back(static_cast<float>(example.label));
      }
      const auto f = loaded_.model->representation(at::stack(images).to(world_.device()));
      rep.slice(0, r.begin, r.end).copy_(f);
      out.slice(0, r.begin, r.end).select(1, 0).copy_(loaded_.model->head(f).argmax(1));
      out.slice(0, r.begin, r.end).select(1, 1).copy_(at::tensor(labels, at::kFloat));
      progress.advance((r.end - r.begin) * world_.size());
    }
    progress.finish();
    comm_.all_reduce(rep);
    comm_.all_reduce(out);
    rep = rep.cpu();
    out = out.cpu();
    return {rep, out.select(1, 0).to(at::kLong), out.select(1, 1).to(at::kLong)};
  }

 private:
  classify::LoadedClassifier loaded_;
  const EvaluateSettings& settings_;
  dist::World& world_;
  dist::Communicator& comm_;
  data::TransformOptions transform_;
  std::int64_t width_ = 0;
};

std::int64_t capped(std::int64_t size, const EvaluateSettings& s) {
  return s.max_images > 0 ? std::min(size, s.max_images) : size;
}

void require_same_classes(const classify::LoadedClassifier& c, const data::Dataset& d, const std::string& folder) {
  if (c.info.class_names != d.class_names())
    throw ConfigError("evaluate: the classifier in " + folder + " knows " + std::to_string(c.info.class_names.size()) +
                      " classes that are not those of " + d.describe() + " (" + std::to_string(d.class_names().size()) +
                      " classes): train it on this dataset");
}

// Each sample's source image (dataset index; -1 for per-class prompts).
at::Tensor tag_sources(const std::string& store_path, const std::string& tag, std::int64_t rows) {
  auto file = h5::File::open_serial(store_path);
  const std::string name = "samples/" + tag + "/source";
  const auto ds = file.open_dataset(name);
  ds.require_layout(at::kLong, {-1});
  return ds.read_rows(0, rows);
}

// The distinct sources, for the memorisation check.
std::vector<std::int64_t> distinct_sources(const at::Tensor& source) {
  const auto* p = source.data_ptr<std::int64_t>();
  std::set<std::int64_t> distinct(p, p + source.numel());
  distinct.erase(-1);
  return {distinct.begin(), distinct.end()};
}

TagMetrics measure(const std::string& tag, const SetFeatures& real, const SetFeatures& test, FeatureModel& model,
                   const data::DatasetPtr& real_data, const std::string& store_path, const EvaluateSettings& s) {
  TagMetrics m;
  m.tag = tag;
  const auto samples = data::make_dataset("store", store_path, "train", "", {tag});
  require_same_classes(model.classifier(), *samples, s.classifier);
  const auto fake = model.of(*samples, capped(samples->size(), s), "/samples/" + tag);
  m.fid = frechet_distance(real.representation, fake.representation);
  const auto manifold = manifold_metrics(real.representation, fake.representation, s.k);
  m.precision = manifold.precision;
  m.recall = manifold.recall;
  m.density = manifold.density;
  m.coverage = manifold.coverage;
  const auto agree = fake.predicted.eq(fake.label).to(at::kDouble);
  m.label_agreement = agree.mean().item<double>();
  const auto classes = static_cast<std::int64_t>(model.classifier().info.class_names.size());
  for (std::int64_t c = 0; c < classes; ++c) {
    const auto in_class = fake.label.eq(c);
    const auto n = in_class.sum().item<std::int64_t>();
    m.per_class_agreement.push_back(n > 0 ? agree.masked_select(in_class).mean().item<double>() : -1.0);
  }
  // Leaks: test images with a generated image much closer than test images are to each other.
  const auto test_spacing = nearest(test.representation, test.representation, true).distance.median().item<double>();
  const auto to_fake = nearest(test.representation, fake.representation).distance;
  m.leaked_test_images = to_fake.le(s.leak_ratio * test_spacing).sum().item<std::int64_t>();
  // Memorisation: each generated image's nearest source image, and whether it is its own.
  const auto own = tag_sources(store_path, tag, fake.label.size(0));
  const auto sources = distinct_sources(own);
  if (sources.size() >= 2) {
    const auto source_set = data::make_subset(real_data, sources, "the sources of /samples/" + tag);
    const auto src = model.of(*source_set, source_set->size(), "the sources of " + tag);
    const auto near = nearest(fake.representation, src.representation);
    const auto nearest_source = at::tensor(sources, at::kLong).index_select(0, near.index);
    m.own_source_share = nearest_source.eq(own).to(at::kDouble).mean().item<double>();
    m.mean_source_distance = near.distance.mean().item<double>();
  }
  return m;
}

// The tag's metrics replace those of other settings as one new group
// (NewGroups): a run stopped while writing them leaves the old ones or none,
// never a group whose settings say it is whole while values are missing.
void write_metrics(store::Store& st, const TagMetrics& m, const EvaluateSettings& s) {
  const std::string group = "/metrics/" + m.tag;
  const std::string recover = "Name another store.path, or copy the store without /metrics.";
  if (store::unreadable(st, "/metrics")) store::set_aside(st, "/metrics", "evaluate", recover);
  if (!st.has("/metrics")) {
    st.create_group("/metrics");
    st.flush();
  }
  store::NewGroups created(st);
  auto& g = created.add(group);
  g.set_attribute("settings", evaluate_declaration().text(s));
  store::set_attributes(g, evaluate_declaration().attributes(s));
  for (const auto& [name, value] :
       std::vector<std::pair<std::string, double>>{{"fid", m.fid},
                                                   {"precision", m.precision},
                                                   {"recall", m.recall},
                                                   {"density", m.density},
                                                   {"coverage", m.coverage},
                                                   {"label_agreement", m.label_agreement},
                                                   {"own_source_share", m.own_source_share},
                                                   {"mean_source_distance", m.mean_source_distance}})
    g.set_attribute(name, value);
  g.set_attribute("leaked_test_images", m.leaked_test_images);
  const auto per_class = at::tensor(m.per_class_agreement, at::kDouble);
  const auto ds = g.create_dataset("per_class_agreement", at::kDouble, {per_class.size(0)});
  ds.write_rows(0, per_class, h5::Transfer::collective);
  if (st.has(group)) st.remove(group);
  created.commit();
}

// A /metrics that cannot be read counts as not measured (write_metrics sets it aside).
bool measured_before(const std::string& store_path, const std::string& tag, const std::string& settings) {
  auto file = h5::File::open_serial(store_path);
  const std::string group = "metrics/" + tag;
  try {
    if (!file.exists("metrics") || !file.exists(group)) return false;
    const auto g = file.open_group(group);
    return g.has_attribute("settings") && g.string_attribute("settings") == settings;
  } catch (const StoreError&) {
    return false;
  }
}

}  // namespace

std::vector<TagMetrics> run_evaluate(dist::World& world, dist::Communicator& comm, const EvaluateSettings& settings,
                                     const Config& config) {
  const auto store_path = config.get_string("store.path");
  if (store_path.empty()) throw ConfigError("store.path is not set: name the store that holds the tags to measure");
  EvaluateSettings s = settings;
  FeatureModel model(classify::load_classifier(s.classifier), s, world, comm);
  const auto fingerprint = model.classifier().fingerprint;
  s.classifier_fingerprint = fingerprint;
  const auto text = evaluate_declaration().text(s);
  log::info("evaluate: classifier " + model.classifier().info.spec.name + " of run '" + model.classifier().info.run +
            "' (" + fingerprint + "), tags " + std::to_string(s.tags.size()));
  std::vector<TagMetrics> out;
  std::vector<std::string> pending;
  for (const auto& tag : s.tags) {
    if (measured_before(store_path, tag, text)) {
      log::info("evaluate: /metrics/" + tag + " was measured with these settings: skipped");
      out.push_back({tag});
      out.back().skipped = true;
    } else {
      pending.push_back(tag);
    }
  }
  if (pending.empty()) return out;
  const auto real_data = data::make_dataset(config);
  const auto test_data = data::make_dataset(config.get_string("data.format"), config.get_string("data.root"), "test",
                                            config.get_string("data.labels"));
  require_same_classes(model.classifier(), *real_data, s.classifier);
  const auto real = model.of(*real_data, capped(real_data->size(), s), "the real images");
  const auto test = model.of(*test_data, capped(test_data->size(), s), "the test images");
  for (const auto& tag : pending) {
    out.push_back(measure(tag, real, test, model, real_data, store_path, s));
    auto st = store::Store::open(store_path, world.comm(), true);
    write_metrics(st, out.back(), s);
    st.close();
  }
  return out;
}

}  // namespace dinv::evaluate
