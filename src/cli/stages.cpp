// `dinv embed` and `dinv generate`: configuration -> dataset, model, store ->
// the stage drivers of the inversion and generation modules.
#include <chrono>
#include <ctime>
#include <exception>
#include <fstream>
#include <iostream>

#include <ATen/Parallel.h>

#include "dinv/cli/command.h"
#include "dinv/cli/slurm.h"
#include "dinv/core/error.h"
#include "dinv/core/log.h"
#include "dinv/data/readers.h"
#include "dinv/diffusion/scheduler.h"
#include "dinv/dist/world.h"
#include "dinv/io/resize.h"
#include "dinv/generation/generate.h"
#include "dinv/generation/perturb.h"
#include "dinv/generation/preview.h"
#include "dinv/generation/sd_model.h"
#include "dinv/inversion/embed.h"
#include "dinv/inversion/sd_model.h"
#include "dinv/data/captioned.h"
#include "dinv/dist/communicator.h"
#include "dinv/dist/control.h"
#include "dinv/dist/output_lock.h"
#include "dinv/pretrain/pretrain.h"
#include "dinv/evaluate/evaluate.h"
#include "dinv/retrieve/retrieve.h"
#include "dinv/sd/pipeline.h"
#include "dinv/io/json.h"
#include "dinv/store/store.h"

namespace dinv::cli {

void register_model_options(ConfigSchema& s) {
  s.add("model.path", "", "Stable Diffusion folder in the diffusers layout (model_index.json, unet/, vae/, ...)");
}

namespace {

std::shared_ptr<sd::Pipeline> load_model(const CommandContext& ctx, const std::string& dtype_key) {
  const auto dir = ctx.config.get_string("model.path");
  if (dir.empty())
    throw ConfigError("model.path is not set: name a Stable Diffusion folder (dinv model init makes one)");
  const auto dtype = sd::stage_dtype(ctx.config.get_string(dtype_key), ctx.world.device(), dtype_key);
  return sd::load_pipeline(dir, ctx.world.device(), dtype);
}

std::string store_path(const CommandContext& ctx) {
  const auto path = ctx.config.get_string("store.path");
  if (path.empty()) throw ConfigError("store.path is not set: name the experiment's HDF5 store");
  return path;
}

// Rank 0 writes the preview of --preview N; the other ranks wait for the
// outcome so that a failure ends the whole job with rank 0's message.
void write_preview(CommandContext& ctx, const generation::GenerateSettings& s, const std::string& store,
                   const std::string& tag) {
  std::exception_ptr failure;
  if (ctx.world.is_root()) {
    try {
      generation::PreviewRequest r{
          store, tag, s.chunk_size, s.preview, io::resize_filter_from_string(s.resize_filter), s.preview_path};
      const auto out = generation::write_preview(r, *data::make_dataset(ctx.config));
      log::info("generate: preview of " + std::to_string(out.samples) + " samples in " + std::to_string(out.rows) +
                " rows written to " + out.path);
      std::cout << "preview: " << out.path << std::endl;
    } catch (...) {
      failure = std::current_exception();
    }
  }
  dist::rethrow_root_failure(ctx.world, failure);
}

// How long one run of a stage took, appended by rank 0 as one JSON line to
// OUTPUT.timings.jsonl. Timings are measurements, not results: they never go
// into the store, whose bytes must not depend on how long anything took.
// analysis/report.py sums the lines of all runs (a resumed stage has several)
// into each stage's cost.
class StageTimer {
 public:
  StageTimer(const CommandContext& ctx, std::string stage)
      : ctx_(ctx), stage_(std::move(stage)), start_(std::chrono::steady_clock::now()), started_(utc_now()) {}

  void record(const std::string& output, io::Json fields) const {
    if (!ctx_.world.is_root()) return;
    fields["stage"] = stage_;
    fields["started"] = started_;
    fields["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    fields["ranks"] = ctx_.world.size();
    fields["threads_per_rank"] = at::get_num_threads();
    fields["device"] = ctx_.world.device().str();
    fields["dinv_version"] = store::dinv_version_string();
    const std::string path = output + ".timings.jsonl";
    std::ofstream out(path, std::ios::app);
    out << fields.dump() << "\n";
    out.flush();
    if (!out) log::warn(stage_ + ": could not append the timing record to " + path + " (the results are unaffected)");
  }

 private:
  static std::string utc_now() {
    const std::time_t t = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char text[32];
    std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return text;
  }

  const CommandContext& ctx_;
  std::string stage_;
  std::chrono::steady_clock::time_point start_;
  std::string started_;
};

}  // namespace

int run_embed(CommandContext& ctx) {
  data::require_labelled_data(ctx.config);
  const auto settings = inversion::embed_settings(ctx.config);
  const auto store = store_path(ctx);
  const dist::OutputLock lock(ctx.world, store, "embed");
  const auto dataset = data::make_dataset(ctx.config);
  // A group too small for generate's partners would embed fine and then make
  // generate refuse the store: refuse now, before any work.
  const auto wanted = settings.num_images;
  const auto images = wanted > 0 ? wanted : dataset->size();
  if (images <= dataset->size() &&
      generation::needs_partners(generation::kModeNames.parse(ctx.config.get_string("generate.mode")),
                                 ctx.config.get_real("generate.interpolation")))
    generation::check_partner_groups(images, settings.group_size, ctx.config.get_int("generate.num_samples"), "embed");
  const StageTimer timer(ctx, "embed");
  const auto model = inversion::make_frozen_model(load_model(ctx, "embed.dtype"));
  const auto out =
      inversion::run_embed(ctx.world, settings, *dataset, settings.num_images, model, store, recorded_ini(ctx.config));
  timer.record(store, {{"target", "/embeddings"},
                       {"units_total", out.units_total},
                       {"units_done_before", out.units_done_before},
                       {"units_done_after", out.units_done},
                       {"units_failed", out.units_failed},
                       {"images", out.images},
                       {"stopped", out.stopped}});
  if (out.stopped) {
    log::info("embed: stopped by signal with " + std::to_string(out.units_done) + "/" +
              std::to_string(out.units_total) +
              " units done and the others checkpointed; rerun the same command to resume");
    return 0;
  }
  if (out.units_failed > 0)
    throw Error("embed: " + std::to_string(out.units_failed) + " unit(s) failed (see the messages above); the " +
                std::to_string(out.units_done) + " finished units are kept in " + store);
  log::info("embed: done, " + std::to_string(out.units_done) + " units in " + store + ":/embeddings");
  return 0;
}

int run_generate(CommandContext& ctx) {
  data::require_labelled_data(ctx.config);
  const auto settings = generation::generate_settings(ctx.config);
  const auto store = store_path(ctx);
  const dist::OutputLock lock(ctx.world, store, "generate");
  diffusion::SamplerOptions sampler;
  sampler.name = ctx.config.get_string("sampler.name");
  sampler.timestep_spacing = ctx.config.get_string("sampler.timestep_spacing");
  sampler.eta = ctx.config.get_real("sampler.eta");
  sampler.karras_sigmas = ctx.config.get_bool("sampler.karras_sigmas");
  const StageTimer timer(ctx, "generate");
  const auto model = generation::make_generation_model(load_model(ctx, "generate.dtype"), settings, sampler);
  const auto out = generation::run_generate(ctx.world, settings, model, store, recorded_ini(ctx.config));
  timer.record(store, {{"target", "/samples/" + out.tag},
                       {"units_total", out.chunks_total},
                       {"units_done_before", out.chunks_done_before},
                       {"units_done_after", out.chunks_done},
                       {"images", out.images},
                       {"stopped", out.stopped}});
  if (out.stopped) {
    log::info("generate: stopped by signal with " + std::to_string(out.chunks_done) + "/" +
              std::to_string(out.chunks_total) + " chunks of '" + out.tag + "' done; rerun the same command to resume" +
              (settings.preview > 0 ? " (and to write the preview)" : ""));
    return 0;
  }
  log::info("generate: done, " + std::to_string(out.images) + " images in " + store + ":/samples/" + out.tag);
  if (ctx.world.is_root()) std::cout << "samples: " << store << ":/samples/" << out.tag << std::endl;
  if (settings.preview > 0) write_preview(ctx, settings, store, out.tag);
  return 0;
}

int run_retrieve(CommandContext& ctx) {
  data::require_labelled_data(ctx.config);
  const auto settings = retrieve::retrieve_settings(ctx.config);
  const auto store = store_path(ctx);
  const dist::OutputLock lock(ctx.world, store, "retrieve");
  const auto real = data::make_dataset(ctx.config);
  const auto pool = data::make_dataset(ctx.config, "retrieve.pool");
  if (!real) throw ConfigError("data.format = none: retrieve needs the real images to query");
  if (!pool) ctx.config.reject("retrieve.pool.format", "retrieve needs a pool of images to retrieve from");
  const auto out = retrieve::run_retrieve(ctx.world, settings, *real, *pool, store, recorded_ini(ctx.config));
  if (out.stopped) {
    log::info("retrieve: stopped by signal; rerun the same command to resume (finished shards are kept)");
    return 0;
  }
  log::info("retrieve: done, " + std::to_string(out.rows) + " images in " + store + ":/samples/" + out.tag + " (" +
            std::to_string(out.bad_pool) + " pool images skipped: they did not decode)");
  if (ctx.world.is_root()) std::cout << "samples: " << store << ":/samples/" << out.tag << std::endl;
  return 0;
}

int run_pretrain(CommandContext& ctx) {
  const auto settings = pretrain::pretrain_settings(ctx.config);
  const auto corpus = data::open_captioned(ctx.config.get_string("data.root"));
  const dist::OutputLock lock(ctx.world, settings.output, "pretrain");
  const StageTimer timer(ctx, "pretrain");
  auto comm = dist::make_communicator(ctx.world);
  const auto out = pretrain::run_pretrain(ctx.world, *comm, settings, *corpus);
  timer.record(settings.output, {{"target", settings.output},
                                 {"phases_done", out.phases_done},
                                 {"images", corpus->size()},
                                 {"skipped", out.skipped},
                                 {"stopped", out.stopped}});
  if (out.stopped) {
    log::info("pretrain: stopped by signal; the checkpoint is in " + settings.output +
              ".work; rerun the same command to resume");
    return 0;
  }
  if (ctx.world.is_root()) std::cout << "generator: " << out.output << std::endl;
  return 0;
}

int run_evaluate(CommandContext& ctx) {
  data::require_labelled_data(ctx.config);
  const auto settings = evaluate::evaluate_settings(ctx.config);
  const dist::OutputLock lock(ctx.world, store_path(ctx), "evaluate");
  auto comm = dist::make_communicator(ctx.world);
  const StageTimer timer(ctx, "evaluate");
  const auto metrics = evaluate::run_evaluate(ctx.world, *comm, settings, ctx.config);
  timer.record(store_path(ctx), {{"target", "/metrics"}, {"images", 0}});
  if (!ctx.world.is_root()) return 0;
  std::cout << "tag\tfid\tprecision\trecall\tdensity\tcoverage\tlabel_agreement\tleaked_test\town_source\n";
  for (const auto& m : metrics) {
    if (m.skipped) {
      std::cout << m.tag << "\t(measured before: see /metrics/" << m.tag << ")\n";
      continue;
    }
    std::cout << m.tag << "\t" << m.fid << "\t" << m.precision << "\t" << m.recall << "\t" << m.density << "\t"
              << m.coverage << "\t" << m.label_agreement << "\t" << m.leaked_test_images << "\t" << m.own_source_share
              << "\n";
  }
  return 0;
}

}  // namespace dinv::cli
