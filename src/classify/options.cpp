#include "dinv/core/seed.h"
#include "dinv/classify/options.h"

#include <algorithm>
#include <sstream>

#include "dinv/core/config.h"
#include "dinv/core/error.h"
#include "dinv/core/util.h"

namespace dinv::classify {

void register_train_options(ConfigSchema& s) {
  s.add("train.model", "resnet18", "classifier architecture").choices(model_names());
  s.add("train.steps", 50000, "training steps (the method's 50,000: docs/method.md)").min(1);
  s.add("train.optimizer", "sgd", "optimiser: sgd (momentum, weight decay) or adamw").choices({"sgd", "adamw"});
  s.add("train.lr", 0.1, "base learning rate").greater_than(0);
  s.add("train.momentum", 0.9, "SGD momentum (AdamW: beta1)").min(0).max(0.999999);
  s.add("train.weight_decay", 5e-4, "weight decay").min(0);
  s.add("train.warmup_steps", 1000, "linear warm-up from 0.001x over these steps (times cosine decay to 0.001x)")
      .min(0);
  s.add("train.label_smoothing", 0.0, "label smoothing of the cross-entropy").min(0).max(1);
  s.add("train.precision", kPrecisionNames.name(Precision::fp32),
        "autocast precision on GPU: fp32, fp16 (dynamic loss scaling), bf16")
      .choices(kPrecisionNames.names());
  s.add("train.bucket_mb", 25.0, "gradient all-reduce bucket size in MiB").greater_than(0);
  s.add("train.sync_bn", false,
        "synchronised BatchNorm: batch statistics of the global batch (all ranks) "
        "instead of each rank's own");
  s.add("train.num_evals", 20, "evaluations on the test set over the run (the last at the final step)").min(1);
  s.add("train.checkpoint_every", 1000, "checkpoint every N steps (0: only on SIGTERM/SIGUSR2)").min(0);
  s.add("train.checkpoint_dir", "checkpoints", "folder of the run's checkpoint (<run>.ckpt, removed when done)")
      .non_empty();
  s.add("train.results_dir", "results", "folder of the run's results file (<run>.h5)").non_empty();
  s.add("train.save_model", false,
        "also keep the trained classifier as <results_dir>/<run>.model/ (model.safetensors + config.json), "
        "for dinv evaluate");
  s.add("train.run_name", "", "name of the run (default: model, dataset, data size, source and seed)");
}

void register_sweep_options(ConfigSchema& s) {
  s.add("sweep.name", "sweep", "name of the sweep (Slurm script and job name)").non_empty();
  s.add("sweep.model", "", "comma-separated train.model values (empty: the configured one)");
  s.add("sweep.num_data", "", "comma-separated data.num_data values");
  s.add("sweep.source", "", "comma-separated sources: real, synthetic, mixed (half real, half synthetic per step)");
  s.add("sweep.syn_tags", "",
        "comma-separated syn.tags values, several tags of one value joined by '+' (e.g. "
        "method,prompt,method+prompt); real-only points do not repeat over it");
  s.add("sweep.syn_amount", "",
        "comma-separated amounts of synthetic data: N = syn.per_source (samples per source "
        "image, 0: all), tN = syn.total (N samples in all); real-only points do not repeat over it");
  s.add("sweep.seed", "", "comma-separated run.seed values");
  s.add("sweep.mode", "local", "local: run the points one after another here; slurm: write a job-array script")
      .choices({"local", "slurm"});
  s.add("sweep.task", -1, "run only this point (Slurm array tasks set it; -1: all)").min(-1);
  s.add("sweep.submit", false, "slurm mode: submit the script with sbatch");
  s.add("sweep.template", "slurm/sweep.sbatch.in",
        "Slurm job-array template (@NAME@, @TASKS@, @COMMAND@, @SBATCH@ replaced); a relative path missing from "
        "the working directory is looked up in the folder above the dinv binary's (the source tree of build/dinv)");
  s.add("sweep.launcher", "srun", "how a task starts its ranks in slurm mode (e.g. srun, \"mpirun -np 4\")");
  // No defaults: these say what to do with a sweep, not what it is, and are
  // left out of the sweep's frozen configuration.
  s.add_without_default(
      "sweep.status", ValueKind::boolean,
      "print the status of every point (done, running, pending, failed, missing) and exit (--status)");
  s.add_without_default("sweep.resubmit", ValueKind::boolean,
                        "submit a job array of only the failed and missing points of the frozen sweep (--resubmit)");
  s.add_without_default("sweep.sbatch_args", ValueKind::string,
                        "slurm mode: more sbatch arguments for the submission, as a shell would read them "
                        "(slurm/submit.sh passes its own here)");
  s.add_without_default("sweep.max_array_size", ValueKind::integer,
                        "slurm mode: Slurm's MaxArraySize (array indices stay below it; a larger sweep is submitted "
                        "as several arrays). Unset: asked of `scontrol show config`, else Slurm's default 1001")
      .min(1);
  s.add_without_default("sweep.after", ValueKind::string,
                        "slurm mode: the array starts after this job id finished successfully (afterok; a failure "
                        "cancels the array)");
}

TrainOptions train_options(const Config& c, std::int64_t resolution, std::int64_t num_classes) {
  TrainOptions o;
  o.model = {c.get_string("train.model"), num_classes, resolution};
  o.optimizer.name = c.get_string("train.optimizer");
  o.optimizer.lr = c.get_real("train.lr");
  o.optimizer.momentum = c.get_real("train.momentum");
  o.optimizer.weight_decay = c.get_real("train.weight_decay");
  o.steps = c.get_int("train.steps");
  o.batch_size = c.get_int("data.real_bs") + c.get_int("data.syn_bs");
  o.eval_batch_size = c.get_int("data.eval_bs");
  o.warmup_steps = c.get_int("train.warmup_steps");
  o.label_smoothing = c.get_real("train.label_smoothing");
  o.num_evals = c.get_int("train.num_evals");
  o.precision = kPrecisionNames.parse(c.get_string("train.precision"));
  o.bucket_bytes = static_cast<std::int64_t>(c.get_real("train.bucket_mb") * 1024 * 1024);
  o.sync_batchnorm = c.get_bool("train.sync_bn");
  o.seed = run_seed(c);
  o.checkpoint_every = c.get_int("train.checkpoint_every");
  o.checkpoint_path = c.get_string("train.checkpoint_dir") + "/" + run_name(c) + ".ckpt";
  o.progress = c.get_string("run.progress");
  return o;
}

std::string run_name(const Config& c) {
  const std::string chosen = c.get_string("train.run_name");
  if (!chosen.empty()) return chosen;
  const auto real = c.get_int("data.real_bs"), syn = c.get_int("data.syn_bs");
  const std::string source = syn == 0 ? "real" : real == 0 ? "synthetic" : "mixed";
  const auto n = c.get_int("data.num_data");
  return c.get_string("train.model") + "_" + c.get_string("data.format") + "_n" + (n == 0 ? "all" : std::to_string(n)) +
         "_" + source + (syn == 0 ? "" : synthetic_label(c)) + "_s" + std::to_string(run_seed(c));
}

std::string synthetic_label(const Config& c) {
  if (c.get_string("syn.format") != "store") return "";
  std::string tags = c.get_string("syn.tags"), out = "_";
  for (char ch : tags)
    if (ch != ' ') out += ch == ',' ? '+' : ch;
  const auto k = c.get_int("syn.per_source"), t = c.get_int("syn.total");
  if (k > 0) out += "_k" + std::to_string(k);
  if (t > 0) out += "_t" + std::to_string(t);
  return out;
}

namespace {

// The items of a list key; an empty item is a mistake, not something to skip.
std::vector<std::string> axis_values(const Config& c, const std::string& key) {
  std::vector<std::string> out;
  for (const auto& item : split(c.get_string(key), ',')) {
    out.push_back(trim(item));
    if (out.back().empty()) c.reject(key, "empty item in the list");
  }
  return out;
}

// The overrides that make a run use `source` with the base configuration's global batch.
std::vector<std::string> source_overrides(const Config& c, const std::string& source) {
  const auto batch = c.get_int("data.real_bs") + c.get_int("data.syn_bs");
  if (source == "real") return {"--data.real_bs=" + std::to_string(batch), "--data.syn_bs=0"};
  if (source == "synthetic") return {"--data.real_bs=0", "--data.syn_bs=" + std::to_string(batch)};
  if (source == "mixed")
    return {"--data.real_bs=" + std::to_string(batch / 2), "--data.syn_bs=" + std::to_string(batch - batch / 2)};
  c.reject("sweep.source", "unknown source '" + source + "' (real, synthetic, mixed)");
}

std::string base_source(const Config& c) {
  const auto real = c.get_int("data.real_bs"), syn = c.get_int("data.syn_bs");
  return syn == 0 ? "real" : real == 0 ? "synthetic" : "mixed";
}

// "4" -> syn.per_source = 4 (name k4), "t500" -> syn.total = 500 (name t500).
std::vector<std::string> amount_overrides(const Config& c, const std::string& v) {
  const bool total = !v.empty() && v[0] == 't';
  const std::string digits = total ? v.substr(1) : v;
  if (digits.empty() || digits.size() > 12 || digits.find_first_not_of("0123456789") != std::string::npos)
    c.reject("sweep.syn_amount", "'" + v + "' is neither N (samples per source image) nor tN (samples in all)");
  if (total) return {"--syn.total=" + digits, "--syn.per_source=0"};
  return {"--syn.per_source=" + digits, "--syn.total=0"};
}

std::string tags_override(const Config& c, const std::string& v) {
  std::string tags;
  for (char ch : v) tags += ch == '+' ? ',' : ch;
  if (tags.front() == ',' || tags.back() == ',' || tags.find(",,") != std::string::npos)
    c.reject("sweep.syn_tags", "'" + v + "' has an empty tag (tags of one value are joined by '+')");
  return "--syn.tags=" + tags;
}

}  // namespace

std::vector<SweepPoint> expand_sweep(const Config& c) {
  struct Axis {
    std::string key, label;
    std::vector<std::string> values;
  };
  std::vector<Axis> axes = {{"sweep.model", "", axis_values(c, "sweep.model")},
                            {"sweep.num_data", "n", axis_values(c, "sweep.num_data")},
                            {"sweep.source", "", axis_values(c, "sweep.source")},
                            {"sweep.syn_tags", "", axis_values(c, "sweep.syn_tags")},
                            {"sweep.syn_amount", "", axis_values(c, "sweep.syn_amount")},
                            {"sweep.seed", "s", axis_values(c, "sweep.seed")}};
  for (const auto& m : axes[0].values) {
    const auto& known = model_names();
    if (std::find(known.begin(), known.end(), m) == known.end()) c.reject("sweep.model", "unknown model '" + m + "'");
  }
  std::vector<SweepPoint> points = {{c.get_string("sweep.name"), {}, base_source(c)}};
  for (const auto& axis : axes) {
    if (axis.values.empty()) continue;
    const bool synthetic_axis = axis.key == "sweep.syn_tags" || axis.key == "sweep.syn_amount";
    std::vector<SweepPoint> next;
    for (const auto& p : points) {
      if (synthetic_axis && p.source == "real") {  // one real run, not one per synthetic setting
        next.push_back(p);
        continue;
      }
      for (const auto& v : axis.values) {
        SweepPoint q = p;
        q.name += "_" + axis.label + (axis.key == "sweep.syn_amount" && v[0] != 't' ? "k" : "") + v;
        if (axis.key == "sweep.source") q.source = v;
        if (axis.key == "sweep.syn_tags") q.overrides.push_back(tags_override(c, v));
        if (axis.key == "sweep.syn_amount")
          for (auto& o : amount_overrides(c, v)) q.overrides.push_back(o);
        if (axis.key == "sweep.model") q.overrides.push_back("--train.model=" + v);
        if (axis.key == "sweep.num_data") q.overrides.push_back("--data.num_data=" + v);
        if (axis.key == "sweep.seed") q.overrides.push_back("--run.seed=" + v);
        if (axis.key == "sweep.source")
          for (auto& o : source_overrides(c, v)) q.overrides.push_back(o);
        next.push_back(std::move(q));
      }
    }
    points = std::move(next);
  }
  for (auto& p : points) p.overrides.push_back("--train.run_name=" + p.name);
  return points;
}

}  // namespace dinv::classify
