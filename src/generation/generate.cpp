#include "dinv/generation/generate.h"

#include <cmath>
#include <map>

#include <ATen/ATen.h>

#include "dinv/core/error.h"
#include "dinv/core/log.h"
#include "dinv/core/progress.h"
#include "dinv/core/seed.h"
#include "dinv/dist/partition.h"
#include "dinv/dist/world.h"
#include "dinv/generation/perturb.h"
#include "dinv/io/resize.h"
#include "dinv/stage/driver.h"
#include "dinv/store/store.h"
#include "dinv/store/stored_settings.h"

namespace dinv::generation {

namespace {

using settings::Declaration;

bool embedding_mode(const GenerateSettings& s) { return s.mode == Mode::embedding; }
bool prompt_mode(const GenerateSettings& s) { return s.mode == Mode::prompt; }
constexpr const char* kInEmbeddingMode = "generate.mode = embedding";
constexpr const char* kInPromptMode = "generate.mode = prompt";

// Every generate setting, once, in the order of the help and the stored
// configuration. Text positions order the stored settings text ("mode=...
// num_samples=... ... uncond=group_mean", byte for byte as before the
// declaration), attribute positions the tag's typed attributes, tag
// positions the pieces of the derived tag. sampler.* and run.seed are
// registered by diffusion and core; generate only uses them.
Declaration<GenerateSettings> declare_generate_settings() {
  using S = GenerateSettings;
  Declaration<S> d("generate");
  d.add_choice("generate.mode", &S::mode, kModeNames,
               "embedding: perturbed learned embeddings (the method); prompt: class-name prompts (baseline)")
      .changes(0)
      .stored(0)
      .tagged(0, [](const S& s) { return s.mode == Mode::embedding ? "emb" : "prompt"; });
  d.add("generate.num_samples", &S::num_samples, "samples per source image (per class with prompt_per = class)")
      .min(1)
      .max(10000)
      .changes(1)
      .stored(9)
      .tagged(2, "n");
  d.add("generate.interpolation", &S::interpolation, "interpolation strength s towards the partner embedding")
      .min(0)
      .max(1)
      .changes(9)
      .only_when(embedding_mode, kInEmbeddingMode)
      .stored(2)
      .tagged(3, "s");
  d.add("generate.emb_noise", &S::emb_noise, "standard deviation of the Gaussian noise added to the embedding")
      .min(0)
      .changes(10)
      .only_when(embedding_mode, kInEmbeddingMode)
      .stored(1, "noise")
      .tagged(4, "noise");
  d.add("generate.sampling_resolution", &S::sampling_resolution, "image size the model samples at")
      .min(8)
      .max(kMaxResolution)
      .changes(5)
      .stored(6)
      .tagged(8, [](const S& s) {
        return "r" + std::to_string(s.sampling_resolution) + "to" + std::to_string(s.save_resolution);
      });
  d.add("generate.save_resolution", &S::save_resolution,
        "image size stored (antialiased resize; larger than sampling upsamples)")
      .min(1)
      .max(kMaxResolution)
      .changes(6)
      .stored(7);
  d.add("generate.resize_filter", &S::resize_filter, "filter of the resize to save_resolution")
      .choices({"nearest", "bilinear", "bicubic", "lanczos"})
      .changes(7);
  d.add("generate.batch_size", &S::batch_size,
        "samples per sampling batch: any rank count gives the same bytes for the same batch_size and chunk_size; "
        "another value gives the same samples within 1 of 255 per pixel value (CPU kernels may round by batch shape)")
      .min(1);
  d.add("generate.chunk_size", &S::chunk_size,
        "samples per work unit (resume granularity); batches are cut within units, so like batch_size "
        "another value may change pixel values by at most 1")
      .min(1)
      .stored(10);
  d.add_choice("generate.uncond", &S::uncond, kUncondNames,
               "unconditional branch: the group's mean embedding (the method) or the empty prompt")
      .changes(11)
      .only_when(embedding_mode, kInEmbeddingMode)
      .stored(8)
      .tagged(5, [](const S& s) { return s.uncond == Uncond::group_mean ? "" : "emptyuncond"; });
  d.add("generate.prompt", &S::prompt, "prompt template of prompt mode ({} is the class name)")
      .changes(12)
      .only_when(prompt_mode, kInPromptMode);
  d.add_choice("generate.prompt_per", &S::prompt_per, kPromptPerNames,
               "prompt mode: num_samples per source image or per class")
      .changes(13)
      .only_when(prompt_mode, kInPromptMode)
      .tagged(1, [](const S& s) { return kPromptPerNames.name(s.prompt_per); });
  d.add("generate.tag", &S::tag, "name of /samples/<tag> (empty: derived from the settings)");
  d.add_optional("generate.preview", &S::preview, ValueKind::integer,
                 "after generating, write a PNG of the first N finished samples beside their sources (--preview N)")
      .min(1);
  d.add("generate.preview_path", &S::preview_path,
        "file of the preview (empty: <store.path>.preview/<tag>.png; --preview-out)");
  // Not in the settings text (tags written before it kept it out): the tag's
  // attribute `dtype` records it, and a resume checks it there.
  d.add("generate.dtype", &S::dtype, "UNet/VAE dtype (fp16/bf16 on GPU only)").choices({"fp32", "fp16", "bf16"});
  d.use("sampler.guidance", &S::guidance).changes(2).stored(3).tagged(6, "w");
  // The stored name is the model's resolved sampler (as_run), not "folder".
  d.use("sampler.name", &S::sampler).named("sampler").changes(3).stored(4).tagged(7, [](const S& s) {
    return s.sampler + std::to_string(s.steps);
  });
  d.use("sampler.steps", &S::steps).changes(4).stored(5);
  d.use("run.seed", &S::seed).changes(8).tagged(9, "seed");
  return d;
}

// The settings as a run with `m` applies them: the sampler is the model's.
GenerateSettings as_run(GenerateSettings s, const std::string& sampler_name) {
  s.sampler = sampler_name;
  return s;
}

}  // namespace

const settings::Declaration<GenerateSettings>& generate_declaration() {
  static const auto declaration = declare_generate_settings();
  return declaration;
}

void register_generate_options(ConfigSchema& s) { generate_declaration().register_options(s); }

GenerateSettings generate_settings(const Config& c) {
  auto s = generate_declaration().read(c);
  if (s.prompt.find("{}") == std::string::npos) c.reject("generate.prompt", "has no {} for the class name");
  if (s.tag.find('/') != std::string::npos) c.reject("generate.tag", "must not contain '/'");
  if (s.save_resolution > s.sampling_resolution)
    log::warn_job("generate.save_resolution " + std::to_string(s.save_resolution) + " > sampling_resolution " +
                  std::to_string(s.sampling_resolution) + ": images are upsampled after sampling");
  return s;
}

namespace {

std::uint64_t sample_seed(const GenerateSettings& s, std::int64_t source, std::int64_t k, std::uint64_t what) {
  return stream_seed(s.seed, Stage::generate,
                     {static_cast<std::uint64_t>(source + 1), static_cast<std::uint64_t>(k), what});
}

enum : std::uint64_t { kPartners = 1, kEmbeddingNoise = 2 };

// Sample m's sampler generator is seeded from (run seed, m).
std::vector<SampleSpec> with_seeds(std::vector<SampleSpec> specs, const GenerationModel& m) {
  for (std::size_t i = 0; i < specs.size(); ++i) specs[i].seed = m.sample_seed(static_cast<std::int64_t>(i));
  return specs;
}

struct SourceData {
  std::vector<std::int64_t> labels;
  std::vector<std::string> class_names;
  std::int64_t group_size = 0;
};

SourceData read_source(const store::Store& st) {
  SourceData d;
  const h5::Dataset label = st.dataset("/source/label");
  label.require_layout(at::kLong, {-1});
  const at::Tensor labels = label.read_all();
  d.labels.assign(labels.data_ptr<std::int64_t>(), labels.data_ptr<std::int64_t>() + labels.numel());
  d.class_names = st.group("/source").strings_attribute("class_names");
  const auto classes = static_cast<std::int64_t>(d.class_names.size());
  for (std::size_t i = 0; i < d.labels.size(); ++i)
    if (d.labels[i] < 0 || d.labels[i] >= classes)
      throw StoreError("store '" + st.path() + "': /source/label[" + std::to_string(i) + "] is " +
                       std::to_string(d.labels[i]) + ", outside the " + std::to_string(classes) +
                       " classes of /source's class_names");
  d.group_size = st.group("/embeddings").int_attribute("group_size");
  const auto n = static_cast<std::int64_t>(d.labels.size());
  if (d.group_size < 1 || d.group_size > std::max<std::int64_t>(n, 1))
    throw StoreError("store '" + st.path() + "': /embeddings attribute group_size is " + std::to_string(d.group_size) +
                     ", expected 1.." + std::to_string(std::max<std::int64_t>(n, 1)) + " (the store has " +
                     std::to_string(n) + " source images)");
  const h5::Dataset data = st.dataset("/embeddings/data");
  data.require_layout(at::kFloat, {n, -1, -1});
  return d;
}

std::vector<SampleSpec> plan_samples(const GenerateSettings& s, const SourceData& src, const GenerationModel& m) {
  std::vector<SampleSpec> specs;
  const auto n = static_cast<std::int64_t>(src.labels.size());
  if (s.mode == Mode::prompt && s.prompt_per == PromptPer::class_) {
    for (std::int64_t c = 0; c < static_cast<std::int64_t>(src.class_names.size()); ++c)
      for (std::int64_t k = 0; k < s.num_samples; ++k) specs.push_back({-1, -1, c, k, 0});
    return with_seeds(specs, m);
  }
  for (std::int64_t i = 0; i < n; ++i) {
    std::vector<std::int64_t> partners;  // none (-1) where nothing is interpolated
    if (needs_partners(s.mode, s.interpolation)) {
      const auto g0 = i / src.group_size * src.group_size;
      const auto g1 = std::min(n, g0 + src.group_size);
      const std::vector<std::int64_t> group(src.labels.begin() + g0, src.labels.begin() + g1);
      for (auto j : draw_partners(group, i - g0, s.num_samples, sample_seed(s, i, 0, kPartners)))
        partners.push_back(g0 + j);
    }
    for (std::int64_t k = 0; k < s.num_samples; ++k)
      specs.push_back({i, partners.empty() ? -1 : partners[k], src.labels[i], k, 0});
  }
  return with_seeds(specs, m);
}

// Embedding rows of a group, read once per chunk that needs them.
class EmbeddingRows {
 public:
  EmbeddingRows(const store::Store& st, std::int64_t group_size)
      : dataset_(st.dataset("/embeddings/data")), group_size_(group_size), images_(dataset_.dims().at(0)) {}
  at::Tensor row(std::int64_t i) { return group(i / group_size_)[i % group_size_]; }
  at::Tensor group_mean(std::int64_t i) { return group(i / group_size_).mean(0); }

 private:
  const at::Tensor& group(std::int64_t g) {
    auto it = cache_.find(g);
    if (it == cache_.end()) {
      if (cache_.size() > 8) cache_.clear();
      const auto begin = g * group_size_;
      it = cache_.emplace(g, dataset_.read_rows(begin, std::min(images_, begin + group_size_))).first;
    }
    return it->second;
  }
  h5::Dataset dataset_;
  std::int64_t group_size_, images_;
  std::map<std::int64_t, at::Tensor> cache_;
};

std::string prompt_for(const GenerateSettings& s, const std::string& class_name) {
  std::string p = s.prompt;
  p.replace(p.find("{}"), 2, class_name);
  return p;
}

// Conditioning and unconditional branch of a batch of samples.
std::pair<at::Tensor, at::Tensor> conditioning(const GenerateSettings& s, const std::vector<SampleSpec>& batch,
                                               const GenerationModel& model, EmbeddingRows* rows,
                                               const SourceData& src) {
  std::vector<at::Tensor> cond, uncond;
  if (s.mode == Mode::prompt) {
    std::vector<std::string> prompts;
    for (const auto& b : batch) prompts.push_back(prompt_for(s, src.class_names.at(static_cast<std::size_t>(b.label))));
    const at::Tensor c = model.encode_prompts(prompts);
    const at::Tensor u = model.encode_prompts({""}).expand_as(c);
    return {c, u};
  }
  for (const auto& b : batch) {
    const at::Tensor c_i = rows->row(b.source);
    cond.push_back(perturb(c_i, b.partner < 0 ? c_i : rows->row(b.partner), s.interpolation, s.emb_noise,
                           sample_seed(s, b.source, b.index, kEmbeddingNoise)));
    if (s.uncond == Uncond::group_mean) uncond.push_back(rows->group_mean(b.source));
  }
  const at::Tensor c = at::stack(cond);
  if (s.uncond == Uncond::empty_prompt) {
    const at::Tensor e = model.encode_prompts({""});
    if (e.size(1) != c.size(1) || e.size(2) != c.size(2)) {
      // Learned embeddings have T tokens; the prompt has 77: cut to T tokens.
      return {c, e.narrow(1, 0, c.size(1)).expand_as(c)};
    }
    return {c, e.expand_as(c)};
  }
  return {c, at::stack(uncond)};
}

void create_tag(store::Store& st, const std::string& group, const GenerateSettings& s, const GenerationModel& m,
                std::int64_t count, std::int64_t chunks) {
  const auto r = s.save_resolution;
  // Images, four int64 columns, the ledger, and room for the metadata.
  st.require_free_space(count * (r * r * 3 + 4 * 8) + chunks + (1 << 20), group);
  if (!st.has("/samples")) {
    // Stores made before /samples was part of the new file: on disk before the
    // tag, so that a linking flush cut short damages at most /samples' link
    // table, which the next run moves aside (store::set_aside_damaged_tag).
    st.create_group("/samples");
    st.flush();
  }
  store::NewGroups created(st);
  auto& g = created.add(group);
  const auto run = as_run(s, m.sampler_name);
  g.set_attribute("settings", generate_declaration().text(run));
  g.set_attribute("dtype", s.dtype);  // beside the settings text, which older tags wrote without it
  g.set_attribute("model_fingerprint", m.fingerprint);
  store::set_attributes(g, generate_declaration().attributes(run));
  g.create_dataset("images", at::kByte, {count, r, r, 3});
  for (const char* name : {"label", "source", "partner", "seed"}) g.create_dataset(name, at::kLong, {count});
  store::UnitLedger::create(g, chunks);
  created.commit();
}

void write_chunk(store::Store& st, const std::string& group, dist::Range r, const std::vector<SampleSpec>& specs,
                 const at::Tensor& images) {
  std::vector<std::int64_t> label, source, partner, seed;
  for (auto i = r.begin; i < r.end; ++i) {
    const auto& sp = specs[static_cast<std::size_t>(i)];
    label.push_back(sp.label);
    source.push_back(sp.source);
    partner.push_back(sp.partner);
    seed.push_back(static_cast<std::int64_t>(sp.seed));
  }
  auto write = [&](const std::string& name, const at::Tensor& rows) {
    st.dataset(group + name).write_rows(r.begin, rows, h5::Transfer::independent);
  };
  write("/images", images);
  write("/label", at::tensor(label, at::kLong));
  write("/source", at::tensor(source, at::kLong));
  write("/partner", at::tensor(partner, at::kLong));
  write("/seed", at::tensor(seed, at::kLong));
}

void check_embeddings(const store::Store& st, const GenerationModel& m) {
  if (!st.has("/embeddings/done"))
    throw StoreError("store '" + st.path() + "' has no embeddings: run 'dinv embed' with this store first");
  store::require_finished(st, "/embeddings", "embedding units", "rerun 'dinv embed' to complete them first");
  st.require_attribute("/embeddings", "model_fingerprint", m.fingerprint,
                       "Generate with the model the embeddings were learned with (model.path).");
}

}  // namespace

std::string derived_tag(const GenerateSettings& s, const std::string& sampler_name) {
  return generate_declaration().tag(as_run(s, sampler_name));
}

std::int64_t tag_chunk_size(const store::Store& st, const std::string& group, std::int64_t configured) {
  const h5::Group g = st.group(group);
  if (!g.has_attribute("chunk_size")) return configured;
  const auto stored = g.int_attribute("chunk_size");
  if (stored != configured)
    log::info("generate: " + group + " was created with chunk_size " + std::to_string(stored) +
              ", which its ledger of finished chunks needs: using it, not generate.chunk_size = " +
              std::to_string(configured));
  return stored;
}

GenerateOutcome run_generate(dist::World& world, const GenerateSettings& s, const GenerationModel& model,
                             const std::string& store_path, const std::string& config_text) {
  GenerateOutcome out;
  out.tag = s.tag.empty() ? derived_tag(s, model.sampler_name) : s.tag;
  const std::string group = "/samples/" + out.tag;
  SourceData src;
  std::vector<SampleSpec> specs;
  std::int64_t chunk_size = 0;
  std::unique_ptr<EmbeddingRows> rows;
  at::Tensor images;  // the chunk under way
  const auto filter = io::resize_filter_from_string(s.resize_filter);
  stage::UnitStage stage;
  stage.prepare = [&](store::Store& st) {
    if (s.mode == Mode::embedding) check_embeddings(st, model);
    src = read_source(st);
    if (needs_partners(s.mode, s.interpolation))
      check_partner_groups(static_cast<std::int64_t>(src.labels.size()), src.group_size, s.num_samples, "generate");
    specs = plan_samples(s, src, model);
    out.images = static_cast<std::int64_t>(specs.size());
    store::set_aside_damaged_tag(st, group, "generate",
                                 "The rest of the store is intact: copy /source, /embeddings and the file's "
                                 "attributes into a new store (e.g. with h5py's Group.copy) and generate there.");
    if (!st.has(group)) create_tag(st, group, s, model, out.images, dist::chunk_count(out.images, s.chunk_size));
    chunk_size = tag_chunk_size(st, group, s.chunk_size);
    store::require_settings(st, group, generate_declaration(), as_run(s, model.sampler_name),
                            "Choose another generate.tag than '" + out.tag + "' for these settings.");
    st.require_attribute(group, "model_fingerprint", model.fingerprint, "Use the model the tag was generated with.");
    st.require_attribute_if_recorded(group, "dtype", s.dtype,
                                     "Resume in the precision the tag began in, or choose another generate.tag.");
    if (s.mode == Mode::embedding) rows = std::make_unique<EmbeddingRows>(st, src.group_size);
    return stage::Plan{"generate", group, dist::chunk_count(out.images, chunk_size), "chunk", "images"};
  };
  const auto samples_of = [&](std::int64_t c) { return dist::chunk(out.images, chunk_size, c); };
  stage.progress_of = [&](std::int64_t c) { return samples_of(c).size(); };
  stage.starting = [&](std::int64_t done) {
    log::info("generate: " + std::to_string(out.images) + " images into " + group + " of " + store_path + ", " +
              std::to_string(done) + "/" + std::to_string(dist::chunk_count(out.images, chunk_size)) +
              " chunks already done");
  };
  stage.work = [&](std::int64_t c, Progress& progress) {
    const auto r = samples_of(c);
    std::vector<at::Tensor> batches;
    for (auto b = r.begin; b < r.end; b += s.batch_size) {
      const std::vector<SampleSpec> batch(specs.begin() + b, specs.begin() + std::min(r.end, b + s.batch_size));
      const auto [cond, uncond] = conditioning(s, batch, model, rows.get(), src);
      at::Tensor sampled = model.sample(cond, uncond, b).cpu();
      if (sampled.size(1) != s.save_resolution || sampled.size(2) != s.save_resolution)
        sampled = io::resize(sampled, s.save_resolution, s.save_resolution, filter);
      batches.push_back(sampled);
      progress.advance(static_cast<std::int64_t>(batch.size()));
    }
    images = at::cat(batches).contiguous();
    return stage::UnitEnd::finished;
  };
  stage.write = [&](store::Store& st, std::int64_t c) { write_chunk(st, group, samples_of(c), specs, images); };
  stage.items_of = [&](std::int64_t c) { return "samples " + dist::range_text(samples_of(c)); };

  const auto run = stage::run(world, {store_path, false, ""}, stage);
  out.chunks_total = run.units_total;
  out.chunks_done_before = run.units_done_before;
  out.chunks_done = run.units_done;
  out.stopped = run.stopped;
  return out;
}

}  // namespace dinv::generation
