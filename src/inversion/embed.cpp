#include "dinv/inversion/embed.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include "dinv/core/error.h"
#include "dinv/core/log.h"
#include "dinv/core/progress.h"
#include "dinv/core/signals.h"
#include "dinv/dist/world.h"
#include "dinv/io/files.h"
#include "dinv/io/resize.h"
#include "dinv/io/safetensors.h"
#include "dinv/stage/driver.h"
#include "dinv/store/stored_settings.h"
#include "dinv/store/store.h"

namespace dinv::inversion {

namespace {

using settings::Declaration;

// Every embed setting, once. Text positions give the stored settings text
// its order ("num_tokens=5 group_size=100 ... seed=0", kept byte for byte
// from the stores written before the declaration); attribute positions give
// the order of /embeddings' typed attributes.
Declaration<EmbedSettings> declare_embed_settings() {
  using S = EmbedSettings;
  Declaration<S> d("embed");
  d.add("embed.num_tokens", &S::num_tokens, "tokens per learned conditioning tensor (T)")
      .min(1)
      .max(77)
      .changes(0)
      .stored(0);
  d.add("embed.group_size", &S::group_size, "images per group: one embedding table and optimizer each")
      .min(1)
      .max(100000)
      .changes(1)
      .stored(1);
  d.add("embed.batch_size", &S::batch_size, "images per optimizer step of a group (batches in order, no shuffling)")
      .min(1)
      .changes(2);
  d.add("embed.steps", &S::steps, "optimizer steps per group").min(1).changes(3).stored(2);
  d.add<double>(
       "embed.lr", [](auto& s) -> auto& { return s.adam.lr; }, "AdamW learning rate")
      .greater_than(0)
      .changes(7)
      .stored(3);
  d.add<double>(
       "embed.weight_decay", [](auto& s) -> auto& { return s.adam.weight_decay; }, "AdamW decoupled weight decay")
      .min(0)
      .changes(11);
  d.add<double>(
       "embed.beta1", [](auto& s) -> auto& { return s.adam.beta1; }, "AdamW beta1")
      .min(0)
      .max(0.999999)
      .changes(8);
  d.add<double>(
       "embed.beta2", [](auto& s) -> auto& { return s.adam.beta2; }, "AdamW beta2")
      .min(0)
      .max(0.999999)
      .changes(9);
  d.add<double>(
       "embed.eps", [](auto& s) -> auto& { return s.adam.eps; }, "AdamW epsilon")
      .greater_than(0)
      .changes(10);
  d.add("embed.resolution", &S::resolution, "image size fed to the VAE (a multiple of its downsampling factor)")
      .min(8)
      .max(kMaxResolution)
      .changes(5)
      .stored(4);
  d.add("embed.interpolation", &S::interpolation, "resize filter to the resolution")
      .choices({"nearest", "bilinear", "bicubic", "lanczos"})
      .changes(6);
  // Not in the settings text (stores written before it kept it out): the
  // /embeddings attribute `dtype` records it, and a resume checks it there.
  d.add("embed.dtype", &S::dtype, "UNet/VAE dtype (fp16/bf16 on GPU only; embeddings and loss stay fp32)")
      .choices({"fp32", "fp16", "bf16"});
  d.add("embed.checkpoint_every", &S::checkpoint_every, "steps between checkpoints of a unit's state").min(1);
  d.add("embed.pack_units", &S::pack_units,
        "groups trained together in one UNet call (a global setting: same result on any rank count)")
      .min(1)
      .changes(4);
  // The store's shape records it: check_layout refuses another count.
  d.add("embed.num_images", &S::num_images, "images of the dataset to embed, from the first (0: all)").min(0);
  d.use("run.seed", &S::seed).changes(12);
  return d;
}

}  // namespace

const settings::Declaration<EmbedSettings>& embed_declaration() {
  static const auto declaration = declare_embed_settings();
  return declaration;
}

void register_embed_options(ConfigSchema& s) { embed_declaration().register_options(s); }

EmbedSettings embed_settings(const Config& c) {
  auto s = embed_declaration().read(c);
  if (s.batch_size > s.group_size)
    c.reject("embed.batch_size", "is larger than embed.group_size (" + std::to_string(s.group_size) + ")");
  return s;
}

namespace {

struct Layout {
  std::int64_t images, units, tokens, dim, channels, latent;
};

const char* const kLayoutHint = "Use a new store (store.path) for other settings, data or model.";

void create_layout(store::Store& st, const Layout& l, const EmbedSettings& s, const data::Dataset& dataset,
                   const FrozenModel& model) {
  store::NewGroups created(st);
  // dinv retrieve, run first, leaves a /source of the whole [data] set, as
  // embed's units write it: it stays, when it is of this data.
  if (st.has("/source")) {
    st.require_attribute("/source", "dataset_fingerprint", dataset.fingerprint(), kLayoutHint);
    st.require_dataset("/source/index", at::kLong, {l.images});
  } else {
    auto& source = created.add("/source");
    source.set_attribute("class_names", dataset.class_names());
    source.set_attribute("dataset_fingerprint", dataset.fingerprint());
    source.set_attribute("dataset", dataset.describe());
    source.create_dataset("index", at::kLong, {l.images});
    source.create_dataset("label", at::kLong, {l.images});
  }
  auto& emb = created.add("/embeddings");
  emb.set_attribute("model_fingerprint", model.fingerprint);
  emb.set_attribute("settings", embed_declaration().text(s));
  emb.set_attribute("dtype", s.dtype);  // beside the settings text, which older stores wrote without it
  store::set_attributes(emb, embed_declaration().attributes(s));
  emb.set_attribute("loss_note", std::string("loss: each image's denoising loss at the last step that trained it"));
  emb.create_dataset("data", at::kFloat, {l.images, l.tokens, l.dim});
  emb.create_dataset("loss", at::kFloat, {l.images});
  emb.create_dataset("posterior_mean", at::kFloat, {l.images, l.channels, l.latent, l.latent});
  emb.create_dataset("posterior_std", at::kFloat, {l.images, l.channels, l.latent, l.latent});
  store::UnitLedger::create(emb, l.units);
  created.commit();
}

void check_layout(const store::Store& st, const Layout& l, const EmbedSettings& s, const data::Dataset& dataset,
                  const FrozenModel& model) {
  const std::string hint = kLayoutHint;
  st.require_attribute("/source", "dataset_fingerprint", dataset.fingerprint(), hint);
  st.require_attribute("/embeddings", "model_fingerprint", model.fingerprint, hint);
  store::require_settings(st, "/embeddings", embed_declaration(), s, hint);
  st.require_attribute_if_recorded("/embeddings", "dtype", s.dtype,
                                   "Resume in the precision the units began in. " + hint);
  st.require_dataset("/embeddings/data", at::kFloat, {l.images, l.tokens, l.dim});
}

std::string checkpoint_path(const std::string& store_path, std::int64_t unit) {
  char name[64];
  std::snprintf(name, sizeof name, "/embed_unit_%06lld.safetensors", static_cast<long long>(unit));
  return store_path + ".ckpt" + name;
}

bool file_exists(const std::string& p) { return access(p.c_str(), F_OK) == 0; }

// Atomic: a reader sees the previous checkpoint or this one, never half of one.
void save_checkpoint(const std::string& path, const std::map<std::string, at::Tensor>& state) {
  const auto dir = path.substr(0, path.rfind('/'));
  mkdir(dir.c_str(), 0755);
  const std::string tmp = path + ".tmp";
  io::write_safetensors(tmp, state, {{"format", "dinv embed unit checkpoint"}});
  io::replace_file(tmp, path, "checkpoint");
}

Posterior encode_unit(const FrozenModel& model, const at::Tensor& images, std::int64_t batch) {
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> means, stds;
  for (std::int64_t b = 0; b < images.size(0); b += batch) {
    auto p = model.encode(images.narrow(0, b, std::min(batch, images.size(0) - b)));
    means.push_back(p.mean.to(at::kCPU, at::kFloat));
    stds.push_back(p.std.to(at::kCPU, at::kFloat));
  }
  return {at::cat(means), at::cat(stds)};
}

// Train one unit to the end (or to a stop signal). Returns false when stopped.
// `checkpoint_step`: the step of the checkpoint on disk (-1: none), for the
// message of a unit whose loss stops being finite.
bool train_unit(UnitTrainer& trainer, const EmbedSettings& s, const std::string& ckpt, Progress& progress,
                std::int64_t checkpoint_step) {
  while (trainer.steps_done() < s.steps) {
    const double loss = trainer.step();
    if (!std::isfinite(loss)) {
      const auto r = trainer.plan().images();
      // Say what is on disk: a checkpoint exists only once checkpoint_every
      // steps were taken (or the unit resumed from one).
      const std::string kept =
          checkpoint_step >= 0 && file_exists(ckpt)
              ? "its last checkpoint (step " + std::to_string(checkpoint_step) + ") is kept in " + ckpt
              : "no checkpoint of it was written (embed.checkpoint_every = " + std::to_string(s.checkpoint_every) +
                    " steps), so a rerun starts it from step 0";
      throw stage::UnitFailed("embed unit " + std::to_string(trainer.plan().unit) + " (images " +
                              std::to_string(r.begin) + ".." + std::to_string(r.end - 1) + "): loss became " +
                              std::to_string(loss) + " at step " + std::to_string(trainer.steps_done()) + "; " + kept);
    }
    progress.advance(1, "loss " + std::to_string(loss));
    const bool stop = signals::stop_requested();
    if (trainer.steps_done() % s.checkpoint_every == 0 || stop) {
      save_checkpoint(ckpt, trainer.state());
      checkpoint_step = trainer.steps_done();
    }
    if (stop) return false;
  }
  return true;
}

void write_unit(store::Store& st, const UnitTrainer& trainer, const Posterior& posterior, const at::Tensor& labels) {
  const auto r = trainer.plan().images();
  auto write = [&](const char* name, const at::Tensor& rows) {
    st.dataset(name).write_rows(r.begin, rows, h5::Transfer::independent);
  };
  write("/source/index", at::arange(r.begin, r.end, at::kLong));
  write("/source/label", labels);
  write("/embeddings/data", trainer.embeddings());
  write("/embeddings/loss", trainer.last_loss());
  write("/embeddings/posterior_mean", posterior.mean.contiguous());
  write("/embeddings/posterior_std", posterior.std.contiguous());
}

}  // namespace

at::Tensor load_images(const data::Dataset& dataset, dist::Range images, std::int64_t resolution,
                       const std::string& filter) {
  const auto f = io::resize_filter_from_string(filter);
  std::vector<at::Tensor> out;
  for (auto i = images.begin; i < images.end; ++i) {
    at::Tensor img = dataset.get(i).image;
    if (img.size(0) != resolution || img.size(1) != resolution) img = io::resize(img, resolution, resolution, f);
    out.push_back(img.permute({2, 0, 1}).to(at::kFloat).div(127.5).sub(1.0));
  }
  return at::stack(out);
}

EmbedOutcome run_embed(dist::World& world, const EmbedSettings& s, const data::Dataset& dataset,
                       std::int64_t num_images, const FrozenModel& model, const std::string& store_path,
                       const std::string& config_text) {
  const std::int64_t n = num_images > 0 ? num_images : dataset.size();
  if (n > dataset.size())
    throw ConfigError("embed.num_images = " + std::to_string(n) + " but " + dataset.describe() + " has only " +
                      std::to_string(dataset.size()) + " images");
  if (s.resolution % model.latent_factor != 0)
    throw ConfigError("embed.resolution = " + std::to_string(s.resolution) +
                      " is not a multiple of the VAE's "
                      "downsampling factor " +
                      std::to_string(model.latent_factor));
  const auto units = plan_units(n, s.group_size, s.pack_units);
  if (n % s.group_size != 0)
    log::info("embed: " + std::to_string(n) + " images are not a multiple of group_size " +
              std::to_string(s.group_size) + ": the last group holds the remaining " +
              std::to_string(n % s.group_size) + " images");
  const Layout layout{n,
                      static_cast<std::int64_t>(units.size()),
                      s.num_tokens,
                      model.cond_dim,
                      model.latent_channels,
                      s.resolution / model.latent_factor};

  // The unit under way, from its work to its writes.
  at::Tensor labels;
  Posterior posterior;
  std::unique_ptr<UnitTrainer> trainer;
  stage::UnitStage stage;
  stage.prepare = [&](store::Store& st) {
    if (!st.has("/embeddings")) create_layout(st, layout, s, dataset, model);
    check_layout(st, layout, s, dataset, model);
    return stage::Plan{"embed", "/embeddings", layout.units, "unit", "steps"};
  };
  stage.progress_of = [&](std::int64_t) { return s.steps; };
  stage.starting = [&](std::int64_t done) {
    log::info("embed: " + std::to_string(n) + " images in " + std::to_string(layout.units) + " units, " +
              std::to_string(done) + " already done; " + model.description);
  };
  stage.work = [&](std::int64_t u, Progress& progress) {
    trainer.reset();  // the last unit's tables and moments go before this one's are made
    const auto& plan = units[static_cast<std::size_t>(u)];
    const auto images = load_images(dataset, plan.images(), s.resolution, s.interpolation);
    std::vector<std::int64_t> label;
    for (auto i = plan.images().begin; i < plan.images().end; ++i) label.push_back(dataset.get(i).label);
    labels = at::tensor(label, at::kLong);
    posterior = encode_unit(model, images.to(world.device()), s.batch_size);
    trainer = std::make_unique<UnitTrainer>(model, s, plan, posterior, world.device());
    const auto ckpt = checkpoint_path(store_path, u);
    std::int64_t checkpoint_step = -1;
    if (file_exists(ckpt)) {
      trainer->load_state(io::read_safetensors(ckpt), ckpt);
      checkpoint_step = trainer->steps_done();
      progress.advance(trainer->steps_done());
      log::info("embed: unit " + std::to_string(u) + " resumes at step " + std::to_string(trainer->steps_done()));
    }
    return train_unit(*trainer, s, ckpt, progress, checkpoint_step) ? stage::UnitEnd::finished
                                                                    : stage::UnitEnd::stopped;
  };
  stage.write = [&](store::Store& st, std::int64_t) { write_unit(st, *trainer, posterior, labels); };
  // Once the unit is in the store its checkpoint is no longer needed.
  stage.finished = [&](std::int64_t u) { std::remove(checkpoint_path(store_path, u).c_str()); };
  stage.items_of = [&](std::int64_t u) {
    return "images " + dist::range_text(units[static_cast<std::size_t>(u)].images());
  };

  const auto run = stage::run(world, {store_path, true, config_text}, stage);
  return {run.units_total, run.units_done, run.units_failed, run.units_done_before, n, run.stopped};
}

}  // namespace dinv::inversion
