// `dinv train` (one data-parallel run) and `dinv sweep` (a grid of runs, here
// one after another or as a Slurm job array).
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "dinv/classify/options.h"
#include "dinv/classify/results.h"
#include "dinv/classify/trainer.h"
#include "dinv/cli/command.h"
#include "dinv/core/error.h"
#include "dinv/core/log.h"
#include "dinv/data/training_data.h"
#include "dinv/dist/communicator.h"
#include "dinv/dist/world.h"

namespace dinv::cli {
namespace {

std::int64_t data_resolution(const Config& config, const data::TrainingData& d) {
  const auto chosen = config.get_int("data.resolution");
  return chosen > 0 ? chosen : d.test->get(0).image.size(0);
}

std::map<std::string, std::string> fingerprints(const data::TrainingData& d) {
  std::map<std::string, std::string> f;
  if (d.real) f["real"] = d.real->fingerprint();
  if (d.synthetic) f["synthetic"] = d.synthetic->fingerprint();
  f["test"] = d.test->fingerprint();
  return f;
}

// One run; returns 0 also when stopped by a signal (the checkpoint resumes it).
int train_one(const Config& config, dist::World& world, dist::Communicator& comm) {
  const std::string name = classify::run_name(config);
  const std::string results = config.get_string("train.results_dir") + "/" + name + ".h5";
  if (classify::results_complete(results)) {
    log::info("run '" + name + "' is complete (" + results + "): skipped; delete the file to run it again");
    return 0;
  }
  auto d = std::make_shared<data::TrainingData>(data::make_training_data(config, world.rank(), world.size()));
  classify::TrainOptions options = classify::train_options(config, data_resolution(config, *d), d->num_classes);
  log::info("run '" + name + "': " + options.model.name + " at " + std::to_string(options.model.resolution) +
            " px, " + std::to_string(d->num_classes) + " classes, " + std::to_string(options.steps) +
            " steps of " + std::to_string(options.batch_size) + " images on " + world.describe() + ", gradients over " +
            comm.backend());
  classify::RunInfo info{name, config.to_ini(), fingerprints(*d), d->test->class_names(), world.size(),
                         world.device().str(), options.batch_size};
  const std::string checkpoint = options.checkpoint_path;
  classify::Trainer trainer(options, classify::make_loader_batches(d, options.seed), &comm, world.device());
  classify::TrainResult r = trainer.run();
  if (r.stopped_by_signal) return 0;
  if (world.is_root()) {
    classify::write_results(results, r, info);
    std::filesystem::remove(checkpoint);
    log::info("run '" + name + "': final accuracy " + std::to_string(r.final_eval().accuracy) + ", best " +
              std::to_string(r.best.accuracy) + " at step " + std::to_string(r.best.step) + " -> " + results);
  }
  comm.barrier();
  return 0;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw IoError("cannot read " + path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void write_text(const std::string& path, const std::string& text) {
  std::filesystem::path p(path);
  if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path());
  std::ofstream out(path);
  out << text;
  if (!out) throw IoError("cannot write " + path);
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (std::size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size())) s.replace(at, from.size(), to);
  return s;
}

// The job-array script: task i runs point i of the frozen base configuration.
int write_slurm_array(const Config& config, const std::string& base_ini, std::size_t points) {
  const std::string name = config.get_string("sweep.name");
  const std::string script = config.get_string("train.results_dir") + "/" + name + ".sbatch";
  std::string text = read_text(config.get_string("sweep.template"));
  const std::string self = std::filesystem::canonical("/proc/self/exe").string();
  const std::string command = config.get_string("sweep.launcher") + " " + self + " sweep --config " +
                              std::filesystem::absolute(base_ini).string() +
                              " --sweep.mode=local --sweep.task=${SLURM_ARRAY_TASK_ID}";
  text = replace_all(text, "@NAME@", name);
  text = replace_all(text, "@TASKS@", "0-" + std::to_string(points - 1));
  text = replace_all(text, "@COMMAND@", command);
  write_text(script, text);
  log::info("wrote " + script + " (" + std::to_string(points) + " array tasks)");
  if (config.get_bool("sweep.submit")) {
    const int rc = std::system(("sbatch " + script).c_str());
    if (rc != 0) throw Error("sbatch " + script + " failed with status " + std::to_string(rc));
  }
  return 0;
}

}  // namespace

int run_train(CommandContext& ctx) {
  apply_run_options(ctx.config, ctx.world);
  auto comm = dist::make_communicator(ctx.world);
  return train_one(ctx.config, ctx.world, *comm);
}

int run_sweep(CommandContext& ctx) {
  apply_run_options(ctx.config, ctx.world);
  const auto points = classify::expand_sweep(ctx.config);
  // Every point resolves against this frozen copy of the sweep's configuration.
  const std::string base = ctx.config.get_string("train.results_dir") + "/" + ctx.config.get_string("sweep.name") + ".ini";
  if (ctx.world.is_root() && ctx.config.get_int("sweep.task") < 0) write_text(base, ctx.config.to_ini());
  if (ctx.config.get_string("sweep.mode") == "slurm") {
    return ctx.world.is_root() ? write_slurm_array(ctx.config, base, points.size()) : 0;
  }
  const auto task = ctx.config.get_int("sweep.task");
  if (task >= static_cast<std::int64_t>(points.size()))
    ctx.config.reject("sweep.task", "the sweep has " + std::to_string(points.size()) + " points (0.." +
                                        std::to_string(points.size() - 1) + ")");
  auto comm = dist::make_communicator(ctx.world);
  comm->barrier();  // the base file is written
  for (std::size_t i = 0; i < points.size(); ++i) {
    if (task >= 0 && static_cast<std::size_t>(task) != i) continue;
    log::info("sweep point " + std::to_string(i + 1) + "/" + std::to_string(points.size()) + ": " + points[i].name);
    const Config point = Config::resolve(schema(), {base}, points[i].overrides);
    train_one(point, ctx.world, *comm);
  }
  return 0;
}

}  // namespace dinv::cli
