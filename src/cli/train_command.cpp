// `dinv train` (one data-parallel run) and `dinv sweep` (a grid of runs, here
// one after another or as a Slurm job array).
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <sstream>

#include "dinv/classify/options.h"
#include "dinv/classify/results.h"
#include "dinv/classify/saved_model.h"
#include "dinv/classify/trainer.h"
#include "dinv/cli/command.h"
#include "dinv/cli/slurm.h"
#include "dinv/core/error.h"
#include "dinv/core/log.h"
#include "dinv/core/progress.h"
#include "dinv/core/util.h"
#include "dinv/data/readers.h"
#include "dinv/data/subset.h"
#include "dinv/data/training_data.h"
#include "dinv/dist/communicator.h"
#include "dinv/dist/output_lock.h"
#include "dinv/dist/world.h"
#include "dinv/io/data_files.h"
#include "dinv/io/files.h"

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

void save_model(const Config& config, const classify::Trainer& trainer, const classify::ModelSpec& spec,
                const classify::TrainResult& r, const classify::RunInfo& info) {
  const std::string folder = config.get_string("train.results_dir") + "/" + info.run_name + ".model";
  const auto norm = data::transform_options(config, false).norm;
  classify::SavedClassifierInfo saved{spec,
                                      info.class_names,
                                      norm.mean,
                                      norm.std,
                                      info.run_name,
                                      info.fingerprints.count("test") ? info.fingerprints.at("test") : "",
                                      r.final_eval().accuracy};
  classify::save_classifier(folder, *trainer.model(), saved);
  log::info("run '" + info.run_name + "': classifier kept in " + folder);
}

classify::SelectionRecord selection(const data::TrainingData& d) {
  classify::SelectionRecord s;
  s.has_real = !d.real_fingerprint.empty();
  s.real_index = d.real_indices;
  s.real_fingerprint = d.real_fingerprint;
  s.synthetic_tags = d.store_samples.tags;
  s.synthetic_rows = d.store_samples.rows;
  s.synthetic_count = d.store_samples.count;
  s.synthetic_fingerprint = d.store_samples.fingerprint;
  s.follow_real = d.follow_real;
  s.per_source = d.per_source;
  s.total = d.total;
  return s;
}

// One run; returns 0 also when stopped by a signal (the checkpoint resumes it).
int train_one(const Config& config, dist::World& world, dist::Communicator& comm) {
  const std::string name = classify::run_name(config);
  const std::string results = config.get_string("train.results_dir") + "/" + name + ".h5";
  if (classify::results_complete(results)) {
    log::info("run '" + name + "' is complete (" + results + "): skipped; delete the file to run it again");
    return 0;
  }
  const dist::OutputLock lock(world, results, "train");
  auto d = std::make_shared<data::TrainingData>(data::make_training_data(config, world.rank(), world.size()));
  classify::TrainOptions options = classify::train_options(config, data_resolution(config, *d), d->num_classes);
  log::info("run '" + name + "': " + options.model.name + " at " + std::to_string(options.model.resolution) + " px, " +
            std::to_string(d->num_classes) + " classes, " + std::to_string(options.steps) + " steps of " +
            std::to_string(options.batch_size) + " images on " + world.describe() + ", gradients over " +
            comm.backend());
  classify::RunInfo info{name,         recorded_ini(config), fingerprints(*d),   d->test->class_names(),
                         world.size(), world.device().str(), options.batch_size, selection(*d)};
  const std::string checkpoint = options.checkpoint_path;
  classify::Trainer trainer(options, classify::make_loader_batches(d, options.seed), &comm, world.device());
  classify::TrainResult r = trainer.run();
  if (r.stopped_by_signal) return 0;
  if (world.is_root()) {
    // The model first: a complete results file means everything asked for is there.
    if (config.get_bool("train.save_model")) save_model(config, trainer, options.model, r, info);
    classify::write_results(results, r, info);
    std::filesystem::remove(checkpoint);
    log::info("run '" + name + "': final accuracy " + std::to_string(r.final_eval().accuracy) + ", best " +
              std::to_string(r.best.accuracy) + " at step " + std::to_string(r.best.step) + " -> " + results);
  }
  comm.barrier();
  return 0;
}

void write_text(const std::string& path, const std::string& text) {
  std::filesystem::path p(path);
  if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path());
  std::ofstream out(path);
  out << text;
  if (!out) throw IoError("cannot write " + path);
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (std::size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size()))
    s.replace(at, from.size(), to);
  return s;
}

// ------------------------------------------------------------------ sweeps

std::string sweep_file(const Config& c, const std::string& ext) {
  return c.get_string("train.results_dir") + "/" + c.get_string("sweep.name") + ext;
}

// The frozen configuration every point resolves against: the recorded
// configuration without the keys that only say what to do with the sweep.
std::string frozen_ini(const Config& c) {
  std::istringstream in(recorded_ini(c));
  std::string line, section, out;
  while (std::getline(in, line)) {
    if (!line.empty() && line[0] == '[') section = line;
    const std::string key = trim(line.substr(0, line.find('=')));
    if (section == "[sweep]" &&
        (key == "status" || key == "resubmit" || key == "after" || key == "sbatch_args" || key == "max_array_size"))
      continue;
    out += line + "\n";
  }
  return out;
}

// Output of a shell command (stderr too) and its exit status.
std::pair<int, std::string> capture(const std::string& command) {
  FILE* p = popen((command + " 2>&1").c_str(), "r");
  if (!p) throw Error("cannot run '" + command + "'");
  std::string out;
  char buf[4096];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  const int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : 128, out};
}

std::string shell_quote(const std::string& s) { return "'" + replace_all(s, "'", "'\\''") + "'"; }

// A relative template path that is not in the working directory is looked up
// in dinv's data directory (slurm/sweep.sbatch.in of an install or a build).
std::string find_template(const std::string& path) {
  namespace fs = std::filesystem;
  if (fs::path(path).is_absolute() || fs::exists(path)) return path;
  const std::string shipped = io::data_directory() + "/" + path;
  return fs::exists(shipped) ? shipped : path;
}

// One job array of a sweep: point `offset + i` is its array task i, so that
// every index stays below Slurm's MaxArraySize.
struct SweepArray {
  std::size_t offset = 0;
  std::vector<std::size_t> tasks;  // points, ascending
};

struct SweepJob {
  std::string id;
  SweepArray array;
};

// <sweep>.jobs: one line per submitted array, "JOBID TASK,TASK,... [OFFSET]"
// (the offset only when it is not 0).
std::vector<SweepJob> read_jobs(const std::string& path) {
  std::vector<SweepJob> jobs;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream f(line);
    SweepJob j;
    std::string tasks, t;
    if (!(f >> j.id >> tasks)) continue;
    if (!(f >> j.array.offset)) j.array.offset = 0;
    std::istringstream ts(tasks);
    while (std::getline(ts, t, ',')) j.array.tasks.push_back(std::stoul(t));
    jobs.push_back(std::move(j));
  }
  return jobs;
}

// MaxArraySize from `scontrol show config` ("MaxArraySize = 1001"); 0 when
// Slurm cannot be asked.
std::size_t slurm_max_array_size() {
  const auto [rc, out] = capture("scontrol show config");
  if (rc != 0) return 0;
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) {
    if (trim(line.substr(0, line.find('='))) != "MaxArraySize" || line.find('=') == std::string::npos) continue;
    const std::string value = trim(line.substr(line.find('=') + 1));
    if (!value.empty() && value.find_first_not_of("0123456789") == std::string::npos) return std::stoul(value);
  }
  return 0;
}

std::size_t max_array_size(const Config& config) {
  if (config.has("sweep.max_array_size")) return static_cast<std::size_t>(config.get_int("sweep.max_array_size"));
  const std::size_t asked = slurm_max_array_size();
  return asked > 0 ? asked : 1001;  // Slurm's default
}

// The points `tasks` (ascending) as arrays whose indices stay below `max`:
// the first counts from 0 while it can, the others from their first point.
std::vector<SweepArray> split_into_arrays(const std::vector<std::size_t>& tasks, std::size_t max) {
  std::vector<SweepArray> arrays;
  for (const auto t : tasks) {
    if (arrays.empty() || t - arrays.back().offset >= max) arrays.push_back({arrays.empty() && t < max ? 0 : t, {}});
    arrays.back().tasks.push_back(t);
  }
  return arrays;
}

// The job-array script of one array of points (array task i runs point
// offset + i of the frozen configuration `base_ini`), submitted when
// `submit`; returns the job id.
std::string write_slurm_array(const Config& config, const std::string& base_ini, const SweepArray& array, bool submit) {
  const std::string name = config.get_string("sweep.name");
  const std::string script =
      sweep_file(config, array.offset == 0 ? ".sbatch" : "." + std::to_string(array.offset) + ".sbatch");
  const std::string template_path = find_template(config.get_string("sweep.template"));
  std::string text = io::read_text_file(template_path);
  const std::string self = std::filesystem::canonical("/proc/self/exe").string();
  const std::string task =
      array.offset == 0 ? "${SLURM_ARRAY_TASK_ID}" : "$((" + std::to_string(array.offset) + " + SLURM_ARRAY_TASK_ID))";
  const std::string command = config.get_string("sweep.launcher") + " " + self + " sweep --config " +
                              std::filesystem::absolute(base_ini).string() + " --sweep.mode=local --sweep.task=" + task;
  std::vector<std::size_t> indices;
  for (const auto t : array.tasks) indices.push_back(t - array.offset);
  std::string directives;
  for (const auto& o : sbatch_options(config, "sweep")) directives += "#SBATCH " + o + "\n";
  if (text.find("@SBATCH@") != std::string::npos) {
    text = replace_all(text, "@SBATCH@\n", directives);
    text = replace_all(text, "@SBATCH@", directives);
  } else if (!directives.empty()) {
    config.reject("sweep.template", "has no @SBATCH@ line for the [slurm] options (" + trim(directives) + ")");
  }
  text = replace_all(text, "@NAME@", name);
  text = replace_all(text, "@TASKS@", sweep_array_spec(config, indices));
  text = replace_all(text, "@COMMAND@", command);
  write_text(script, text);
  log::info("wrote " + script + " (" + std::to_string(indices.size()) + " array tasks" +
            (array.offset == 0 ? "" : ", points " + std::to_string(array.offset) + " + task") + ")");
  if (!submit) return "";
  std::string cmd = "sbatch --parsable";
  if (config.has("sweep.after") && !trim(config.get_string("sweep.after")).empty())
    cmd +=
        " --dependency=afterok:" + shell_quote(trim(config.get_string("sweep.after"))) + " --kill-on-invalid-dep=yes";
  if (config.has("sweep.sbatch_args")) cmd += " " + config.get_string("sweep.sbatch_args");
  cmd += " " + shell_quote(script);
  const auto [rc, out] = capture(cmd);
  if (rc != 0) throw Error(cmd + " failed with status " + std::to_string(rc) + ": " + trim(out));
  // --parsable: "JOBID" or "JOBID;CLUSTER" on the last line (warnings may come first).
  std::string id = trim(out);
  id = trim(id.substr(id.find_last_of('\n') == std::string::npos ? 0 : id.find_last_of('\n') + 1));
  id = id.substr(0, id.find(';'));
  if (id.empty() || id.find_first_not_of("0123456789") != std::string::npos)
    throw Error(cmd + ": unexpected output '" + trim(out) + "'");
  std::ofstream jobs(sweep_file(config, ".jobs"), std::ios::app);
  jobs << id << " ";
  for (std::size_t i = 0; i < array.tasks.size(); ++i) jobs << (i ? "," : "") << array.tasks[i];
  if (array.offset != 0) jobs << " " << array.offset;
  jobs << "\n";
  if (!jobs) throw IoError("cannot write " + sweep_file(config, ".jobs"));
  std::cout << "submitted sweep " << name << " as job " << id << " (array " << sweep_array_spec(config, indices)
            << (array.offset == 0 ? "" : ": points " + std::to_string(array.offset) + " + index") << ")" << std::endl;
  return id;
}

// The points `tasks` (ascending) as one job array, or several where the
// sweep has more points than Slurm's MaxArraySize allows in one.
void write_slurm_arrays(const Config& config, const std::string& base_ini, const std::vector<std::size_t>& tasks,
                        bool submit) {
  const std::size_t max = max_array_size(config);
  const auto arrays = split_into_arrays(tasks, max);
  if (arrays.size() > 1)
    log::info("sweep: " + std::to_string(tasks.size()) + " points in " + std::to_string(arrays.size()) +
              " job arrays (Slurm's MaxArraySize " + std::to_string(max) + ")");
  for (const auto& array : arrays) write_slurm_array(config, base_ini, array, submit);
}

// Slurm's state of array tasks, (job id, task) -> "STATE reason", from squeue
// (jobs Slurm still remembers), else sacct where accounting runs.
std::map<std::pair<std::string, std::size_t>, std::string> slurm_states(const std::string& name,
                                                                        const std::vector<SweepJob>& jobs) {
  std::map<std::pair<std::string, std::size_t>, std::string> states;
  if (jobs.empty()) return states;
  std::set<std::string> ids;
  for (const auto& j : jobs) ids.insert(j.id);
  auto [rc, out] = capture("squeue -h -r -t all -n " + shell_quote(name) + " -o '%F %K %T %r'");
  if (rc == 0) {
    std::istringstream in(out);
    std::string line;
    while (std::getline(in, line)) {
      std::istringstream f(line);
      std::string job, task, state, reason;
      if (!(f >> job >> task >> state) || !ids.count(job) || task.find_first_not_of("0123456789") != std::string::npos)
        continue;
      std::getline(f, reason);
      reason = trim(reason);
      states[{job, std::stoul(task)}] = state + (reason.empty() || reason == "None" ? "" : " (" + reason + ")");
    }
  }
  std::string list;
  for (const auto& id : ids) list += (list.empty() ? "" : ",") + id;
  std::tie(rc, out) = capture("sacct -n -X -P -o JobID,State -j " + list);
  if (rc == 0) {
    std::istringstream in(out);
    std::string line;
    while (std::getline(in, line)) {
      const auto bar = line.find('|'), under = line.find('_');
      if (bar == std::string::npos || under == std::string::npos || under > bar) continue;
      const std::string job = line.substr(0, under), task = line.substr(under + 1, bar - under - 1);
      if (!ids.count(job) || task.empty() || task.find_first_not_of("0123456789") != std::string::npos) continue;
      std::string state = trim(line.substr(bar + 1));
      state = state.substr(0, state.find(' '));
      states.emplace(std::make_pair(job, std::stoul(task)), state);  // squeue's answer wins
    }
  }
  return states;
}

struct PointStatus {
  std::string name, status, job, slurm, results, note;
};

std::string classify_state(const std::string& slurm) {
  const std::string s = slurm.substr(0, slurm.find(' '));
  static const std::set<std::string> running = {"RUNNING",   "COMPLETING", "CONFIGURING", "STAGE_OUT",
                                                "SIGNALING", "RESIZING",   "SUSPENDED"};
  static const std::set<std::string> pending = {"PENDING",     "REQUEUED",      "REQUEUE_HOLD",
                                                "REQUEUE_FED", "RESV_DEL_HOLD", "SPECIAL_EXIT"};
  if (running.count(s)) return "running";
  if (pending.count(s)) return "pending";
  return "failed";  // COMPLETED without a results file, FAILED, CANCELLED, TIMEOUT, NODE_FAIL, ...
}

std::vector<PointStatus> sweep_status(const Config& config, const std::string& base,
                                      const std::vector<classify::SweepPoint>& points) {
  const auto jobs = read_jobs(sweep_file(config, ".jobs"));
  const auto states = slurm_states(config.get_string("sweep.name"), jobs);
  std::vector<PointStatus> out;
  for (std::size_t i = 0; i < points.size(); ++i) {
    const Config point = Config::resolve(schema(), {base}, points[i].overrides);
    PointStatus s;
    s.name = points[i].name;
    s.results = point.get_string("train.results_dir") + "/" + classify::run_name(point) + ".h5";
    const std::string failed = point.get_string("train.results_dir") + "/" + classify::run_name(point) + ".failed";
    const std::string checkpoint = classify::train_options(point, 1, 1).checkpoint_path;
    const SweepJob* latest = nullptr;  // the latest submission of this point
    for (const auto& j : jobs)
      if (std::find(j.array.tasks.begin(), j.array.tasks.end(), i) != j.array.tasks.end()) latest = &j;
    if (latest) {
      const std::size_t index = i - latest->array.offset;  // Slurm's array task of the point
      s.job = latest->id + "_" + std::to_string(index);
      const auto it = states.find({latest->id, index});
      s.slurm = it == states.end() ? "unknown (no longer listed)" : it->second;
    }
    if (classify::results_complete(s.results)) {
      s.status = "done";
    } else if (!s.job.empty() && s.slurm.rfind("unknown", 0) != 0) {
      s.status = classify_state(s.slurm);
    } else if (std::filesystem::exists(failed)) {
      s.status = "failed";
    } else {
      s.status = "missing";
    }
    if (s.status != "done" && std::filesystem::exists(failed)) s.note = "error: " + trim(io::read_text_file(failed));
    if (s.status != "done" && std::filesystem::exists(checkpoint))
      s.note += (s.note.empty() ? "" : "; ") + std::string("checkpoint ") + checkpoint;
    out.push_back(std::move(s));
  }
  return out;
}

void print_status(const std::string& name, const std::string& base, const std::vector<PointStatus>& st) {
  std::map<std::string, int> count;
  for (const auto& s : st) ++count[s.status];
  std::ostringstream out;
  out << "sweep " << name << " (" << base << "): " << st.size() << " points: ";
  const char* kinds[] = {"done", "running", "pending", "failed", "missing"};
  for (std::size_t k = 0; k < 5; ++k) out << (k ? ", " : "") << count[kinds[k]] << " " << kinds[k];
  out << "\n";
  std::size_t w_name = 4, w_job = 3, w_slurm = 5, w_results = 7;
  for (const auto& s : st) {
    w_name = std::max(w_name, s.name.size());
    w_job = std::max(w_job, s.job.size());
    w_slurm = std::max(w_slurm, s.slurm.size());
    w_results = std::max(w_results, s.results.size());
  }
  auto cell = [](std::string v, std::size_t w) {
    if (v.empty()) v = "-";
    v.resize(std::max(w, v.size()), ' ');
    return v + "  ";
  };
  out << cell("point", 5) << cell("name", w_name) << cell("status", 7) << cell("job", w_job) << cell("slurm", w_slurm)
      << cell("results", w_results) << "note\n";
  for (std::size_t i = 0; i < st.size(); ++i) {
    const auto& s = st[i];
    std::string line = cell(std::to_string(i), 5) + cell(s.name, w_name) + cell(s.status, 7) + cell(s.job, w_job) +
                       cell(s.slurm, w_slurm) + cell(s.results, w_results) + s.note;
    out << trim(line) << "\n";
  }
  std::cout << out.str() << std::flush;
}

// A point of the sweep and its configuration, resolved once from the frozen base.
struct ResolvedPoint {
  std::size_t index;  // in the sweep
  classify::SweepPoint point;
  Config config;
};

// The points `task` names (all of them for -1), resolved.
std::vector<ResolvedPoint> resolve_points(const std::vector<classify::SweepPoint>& points, const std::string& base,
                                          std::int64_t task) {
  std::vector<ResolvedPoint> out;
  for (std::size_t i = 0; i < points.size(); ++i)
    if (task < 0 || static_cast<std::size_t>(task) == i)
      out.push_back({i, points[i], Config::resolve(schema(), {base}, points[i].overrides)});
  return out;
}

// Every point's inputs exist, checked before the first point runs: its real
// subset in the data, its sample tags finished in the store. Otherwise a sweep
// stops at its largest data.num_data, or its first point on a missing tag,
// after the points before it have run. When the sweep is being submitted, its
// tags are not there yet (the jobs before it make them) and its data may be
// readable only on the compute nodes: then the subsets are checked if the data
// opens here, and each task checks the rest when it runs.
void require_point_inputs(const Config& config, const std::vector<ResolvedPoint>& points, bool submitting) {
  std::int64_t size = -1;              // the real dataset, opened once if a point takes a subset
  std::set<std::string> checked_tags;  // "store|tags" already found finished
  const auto reject = [&](const std::string& axis, const std::string& fallback, const classify::SweepPoint& p,
                          const std::string& what) {
    const bool swept = config.has(axis) && !trim(config.get_string(axis)).empty();
    config.reject(swept ? axis : fallback, "point " + p.name + ": " + what);
  };
  for (const auto& [index, p, point] : points) {
    const auto num_data = point.get_int("data.num_data");
    if (num_data > 0 && point.get_string("data.format") != "none") {
      if (size < 0) {
        try {
          size = data::make_dataset(point)->size();
        } catch (const Error& e) {
          if (!submitting) throw;
          log::info("sweep: the real data does not open here (" + std::string(e.what()) +
                    "); each task checks its subset when it runs");
          return;  // nothing else is checked at submission
        }
      }
      try {
        data::subset_indices(size, num_data, point.get_int("data.group_size"),
                             static_cast<std::uint64_t>(point.get_int("data.subset_seed")));
      } catch (const ConfigError& e) {
        reject("sweep.num_data", "data.num_data", p, e.what());
      }
    }
    if (submitting || point.get_int("data.syn_bs") == 0 || point.get_string("syn.format") != "store") continue;
    const std::string store = point.get_string("syn.root"), tags = point.get_string("syn.tags");
    if (!checked_tags.insert(store + "|" + tags).second) continue;
    try {
      data::require_finished_tags(store, split_list(tags));
    } catch (const Error& e) {
      const bool no_store = !std::filesystem::exists(store);
      reject(no_store ? "syn.root" : "sweep.syn_tags", no_store ? "syn.root" : "syn.tags", p, e.what());
    }
  }
}

// Every point's batches divide over the ranks, checked before the first point
// runs: otherwise a later point fails with a batch size the user never wrote
// (sweep.source = mixed halves data.real_bs + data.syn_bs).
void require_batches_divide(const std::vector<ResolvedPoint>& points, int world) {
  for (const auto& [index, p, point] : points) {
    const auto real = point.get_int("data.real_bs"), syn = point.get_int("data.syn_bs");
    if (real % world == 0 && syn % world == 0) continue;
    const bool mixed = p.source == "mixed";
    throw ConfigError("sweep point " + p.name + " trains on " + std::to_string(real) + " real + " +
                      std::to_string(syn) + " synthetic images per step, all ranks together" +
                      (mixed
                           ? " (source mixed: half of data.real_bs + data.syn_bs = " + std::to_string(real + syn) + ")"
                           : std::string()) +
                      ", which do not divide evenly over the " + std::to_string(world) +
                      " ranks: make data.real_bs + data.syn_bs a multiple of " +
                      std::to_string(mixed ? 2 * world : world) + ", or use another rank count");
  }
}

}  // namespace

int run_train(CommandContext& ctx) {
  data::require_labelled_data(ctx.config);
  apply_run_options(ctx.config, ctx.world);
  auto comm = dist::make_communicator(ctx.world);
  return train_one(ctx.config, ctx.world, *comm);
}

int run_sweep(CommandContext& ctx) {
  apply_run_options(ctx.config, ctx.world);
  const Config& config = ctx.config;
  // Every point resolves against this frozen copy of the sweep's configuration.
  const std::string base = sweep_file(config, ".ini");
  const bool status = config.has("sweep.status") && config.get_bool("sweep.status");
  const bool resubmit = config.has("sweep.resubmit") && config.get_bool("sweep.resubmit");
  if (status || resubmit) {
    // The points of the sweep as it was written, whatever the configuration says now.
    if (!std::filesystem::exists(base))
      throw ConfigError("no sweep '" + config.get_string("sweep.name") + "' in " +
                        config.get_string("train.results_dir") + " (" + base + " is missing): run `dinv sweep` first");
    if (!ctx.world.is_root()) return 0;
    const Config frozen = Config::resolve(schema(), {base}, {});
    const auto points = classify::expand_sweep(frozen);
    const auto st = sweep_status(config, base, points);
    if (status) print_status(config.get_string("sweep.name"), base, st);
    if (resubmit) {
      std::vector<std::size_t> tasks;
      for (std::size_t i = 0; i < st.size(); ++i)
        if (st[i].status == "failed" || st[i].status == "missing") tasks.push_back(i);
      if (tasks.empty()) {
        std::cout << "sweep " << config.get_string("sweep.name") << ": no failed or missing points, nothing resubmitted"
                  << std::endl;
        return 0;
      }
      write_slurm_arrays(config, base, tasks, true);
    }
    return 0;
  }
  data::require_labelled_data(config);
  const auto points = classify::expand_sweep(config);
  if (ctx.world.is_root() && config.get_int("sweep.task") < 0) write_text(base, frozen_ini(config));
  if (config.get_string("sweep.mode") == "slurm") {
    if (!ctx.world.is_root()) return 0;
    require_point_inputs(config, resolve_points(points, base, -1), true);
    std::vector<std::size_t> tasks(points.size());
    for (std::size_t i = 0; i < tasks.size(); ++i) tasks[i] = i;
    write_slurm_arrays(config, base, tasks, config.get_bool("sweep.submit"));
    return 0;
  }
  const auto task = config.get_int("sweep.task");
  if (task >= static_cast<std::int64_t>(points.size()))
    config.reject("sweep.task", "the sweep has " + std::to_string(points.size()) + " points (0.." +
                                    std::to_string(points.size() - 1) + ")");
  auto comm = dist::make_communicator(ctx.world);
  comm->barrier();  // the base file is written
  const auto to_run = resolve_points(points, base, task);
  require_point_inputs(config, to_run, false);
  require_batches_divide(to_run, ctx.world.size());
  // Elapsed time and an estimate of the rest (the mean time of the points
  // run so far, finished points skipped in a rerun included) on every line.
  const auto start = std::chrono::steady_clock::now();
  std::size_t started = 0;
  for (const auto& [index, p, point] : to_run) {
    std::string timing;
    if (started > 0) {
      const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      timing = " (elapsed " + Progress::format_duration(elapsed) + ", ETA " +
               Progress::format_duration(elapsed / static_cast<double>(started) *
                                         static_cast<double>(to_run.size() - started)) +
               ")";
    }
    ++started;
    log::info("sweep point " + std::to_string(index + 1) + "/" + std::to_string(points.size()) + ": " + p.name +
              timing);
    // A point that fails leaves <run>.failed with the reason (`dinv sweep --status` shows it).
    const std::string failed = point.get_string("train.results_dir") + "/" + classify::run_name(point) + ".failed";
    try {
      train_one(point, ctx.world, *comm);
    } catch (const Error& e) {
      write_text(failed, std::string(e.what()) + "\n");
      throw;
    }
    if (ctx.world.is_root()) std::filesystem::remove(failed);
  }
  return 0;
}

}  // namespace dinv::cli
