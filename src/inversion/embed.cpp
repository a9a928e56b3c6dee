#include "dinv/inversion/embed.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <sstream>

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
#include "dinv/store/store.h"

namespace dinv::inversion {

void register_embed_options(ConfigSchema& s) {
  s.add("embed.num_tokens", 5, "tokens per learned conditioning tensor (T)").min(1).max(77);
  s.add("embed.group_size", 100, "images per group: one embedding table and optimizer each").min(1).max(100000);
  s.add("embed.batch_size", 50, "images per optimizer step of a group (batches in order, no shuffling)").min(1);
  s.add("embed.steps", 6000, "optimizer steps per group").min(1);
  s.add("embed.lr", 3e-2, "AdamW learning rate").greater_than(0);
  s.add("embed.weight_decay", 1e-2, "AdamW decoupled weight decay").min(0);
  s.add("embed.beta1", 0.9, "AdamW beta1").min(0).max(0.999999);
  s.add("embed.beta2", 0.999, "AdamW beta2").min(0).max(0.999999);
  s.add("embed.eps", 1e-8, "AdamW epsilon").greater_than(0);
  s.add("embed.resolution", 128, "image size fed to the VAE (a multiple of its downsampling factor)")
      .min(8)
      .max(kMaxResolution);
  s.add("embed.interpolation", "bicubic", "resize filter to the resolution")
      .choices({"nearest", "bilinear", "bicubic", "lanczos"});
  s.add("embed.dtype", "fp32", "UNet/VAE dtype (fp16/bf16 on GPU only; embeddings and loss stay fp32)")
      .choices({"fp32", "fp16", "bf16"});
  s.add("embed.checkpoint_every", 500, "steps between checkpoints of a unit's state").min(1);
  s.add("embed.pack_units", 1,
        "groups trained together in one UNet call (a global setting: same result on any rank count)")
      .min(1);
  s.add("embed.num_images", 0, "images of the dataset to embed, from the first (0: all)").min(0);
}

EmbedSettings embed_settings(const Config& c) {
  EmbedSettings s;
  s.num_tokens = c.get_int("embed.num_tokens");
  s.group_size = c.get_int("embed.group_size");
  s.batch_size = c.get_int("embed.batch_size");
  s.steps = c.get_int("embed.steps");
  s.pack_units = c.get_int("embed.pack_units");
  s.checkpoint_every = c.get_int("embed.checkpoint_every");
  s.resolution = c.get_int("embed.resolution");
  s.interpolation = c.get_string("embed.interpolation");
  s.adam = {c.get_real("embed.lr"), c.get_real("embed.beta1"), c.get_real("embed.beta2"), c.get_real("embed.eps"),
            c.get_real("embed.weight_decay")};
  s.seed = static_cast<std::uint64_t>(c.get_int("run.seed"));
  if (s.batch_size > s.group_size)
    c.reject("embed.batch_size", "is larger than embed.group_size (" + std::to_string(s.group_size) + ")");
  return s;
}

namespace {

// Everything that determines the learned embeddings, as stored text: a store
// made with other settings is never silently continued.
std::string settings_text(const EmbedSettings& s) {
  std::ostringstream o;
  o.precision(17);
  o << "num_tokens=" << s.num_tokens << " group_size=" << s.group_size << " batch_size=" << s.batch_size
    << " steps=" << s.steps << " pack_units=" << s.pack_units << " resolution=" << s.resolution
    << " interpolation=" << s.interpolation << " lr=" << s.adam.lr << " beta1=" << s.adam.beta1
    << " beta2=" << s.adam.beta2 << " eps=" << s.adam.eps << " weight_decay=" << s.adam.weight_decay
    << " seed=" << s.seed;
  return o.str();
}

struct Layout {
  std::int64_t images, units, tokens, dim, channels, latent;
};

void create_layout(store::Store& st, const Layout& l, const EmbedSettings& s, const data::Dataset& dataset,
                   const FrozenModel& model) {
  auto source = st.create_group("/source");
  h5::set_attribute(source, "class_names", dataset.class_names());
  h5::set_attribute(source, "dataset_fingerprint", dataset.fingerprint());
  h5::set_attribute(source, "dataset", dataset.describe());
  st.create_dataset("/source/index", at::kLong, {l.images});
  st.create_dataset("/source/label", at::kLong, {l.images});
  auto emb = st.create_group("/embeddings");
  h5::set_attribute(emb, "model_fingerprint", model.fingerprint);
  h5::set_attribute(emb, "settings", settings_text(s));
  h5::set_attribute(emb, "num_tokens", s.num_tokens);
  h5::set_attribute(emb, "group_size", s.group_size);
  h5::set_attribute(emb, "steps", s.steps);
  h5::set_attribute(emb, "lr", s.adam.lr);
  h5::set_attribute(emb, "resolution", s.resolution);
  h5::set_attribute(emb, "loss_note",
                    std::string("loss: each image's denoising loss at the last step that trained it"));
  st.create_dataset("/embeddings/data", at::kFloat, {l.images, l.tokens, l.dim});
  st.create_dataset("/embeddings/loss", at::kFloat, {l.images});
  st.create_dataset("/embeddings/posterior_mean", at::kFloat, {l.images, l.channels, l.latent, l.latent});
  st.create_dataset("/embeddings/posterior_std", at::kFloat, {l.images, l.channels, l.latent, l.latent});
  store::UnitLedger::create(st, "/embeddings", l.units);
  st.flush();
}

void check_layout(const store::Store& st, const Layout& l, const EmbedSettings& s, const data::Dataset& dataset,
                  const FrozenModel& model) {
  const std::string hint = "Use a new store (store.path) for other settings, data or model.";
  st.require_attribute("/source", "dataset_fingerprint", dataset.fingerprint(), hint);
  st.require_attribute("/embeddings", "model_fingerprint", model.fingerprint, hint);
  st.require_attribute("/embeddings", "settings", settings_text(s), hint);
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

class UnitFailed : public Error {
 public:
  using Error::Error;
};

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
      throw UnitFailed("embed unit " + std::to_string(trainer.plan().unit) + " (images " + std::to_string(r.begin) +
                       ".." + std::to_string(r.end - 1) + "): loss became " + std::to_string(loss) + " at step " +
                       std::to_string(trainer.steps_done()) + "; " + kept);
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
    h5::write_rows(st.dataset(name), name, r.begin, rows, false);
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

  auto st = store::Store::open_or_create(store_path, world.comm(), config_text);
  if (!st.has("/embeddings")) create_layout(st, layout, s, dataset, model);
  check_layout(st, layout, s, dataset, model);
  store::UnitLedger ledger(st, "/embeddings", layout.units);

  EmbedOutcome outcome;
  outcome.units_total = layout.units;
  outcome.units_done_before = ledger.done_count();
  outcome.images = n;
  const auto mine = dist::units_of_rank(layout.units, world.size(), world.rank());
  std::int64_t pending = 0;
  for (auto u : mine) pending += ledger.is_done(u) ? 0 : 1;
  log::info("embed: " + std::to_string(n) + " images in " + std::to_string(layout.units) + " units, " +
            std::to_string(ledger.done_count()) + " already done; " + model.description);
  Progress progress("embed (rank 0)", pending * s.steps, "steps");

  for (auto u : mine) {
    if (ledger.is_done(u) || outcome.stopped) continue;
    const auto& plan = units[static_cast<std::size_t>(u)];
    const auto images = load_images(dataset, plan.images(), s.resolution, s.interpolation);
    std::vector<std::int64_t> labels;
    for (auto i = plan.images().begin; i < plan.images().end; ++i) labels.push_back(dataset.get(i).label);
    const Posterior posterior = encode_unit(model, images.to(world.device()), s.batch_size);
    UnitTrainer trainer(model, s, plan, posterior, world.device());
    const auto ckpt = checkpoint_path(store_path, u);
    std::int64_t checkpoint_step = -1;
    if (file_exists(ckpt)) {
      trainer.load_state(io::read_safetensors(ckpt), ckpt);
      checkpoint_step = trainer.steps_done();
      progress.advance(trainer.steps_done());
      log::info("embed: unit " + std::to_string(u) + " resumes at step " + std::to_string(trainer.steps_done()));
    }
    try {
      if (!train_unit(trainer, s, ckpt, progress, checkpoint_step)) {
        outcome.stopped = true;
        continue;
      }
    } catch (const UnitFailed& e) {
      log::error(e.what());
      ++outcome.units_failed;
      continue;
    }
    write_unit(st, trainer, posterior, at::tensor(labels, at::kLong));
    ledger.mark_done_independent(u);
    std::remove(ckpt.c_str());
  }
  progress.finish();
  st.close();

  std::int64_t local[2] = {outcome.units_failed, outcome.stopped ? 1 : 0}, global[2] = {0, 0};
  dist::check_mpi(MPI_Allreduce(local, global, 2, MPI_INT64_T, MPI_SUM, world.comm()), "MPI_Allreduce");
  outcome.units_failed = global[0];
  outcome.stopped = global[1] > 0;
  auto reopened = store::Store::open(store_path, world.comm(), false);
  outcome.units_done = store::UnitLedger(reopened, "/embeddings", layout.units).done_count();
  reopened.close();
  return outcome;
}

}  // namespace dinv::inversion
