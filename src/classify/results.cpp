#include "dinv/classify/results.h"

#include <filesystem>

#include <ATen/ATen.h>

#include "dinv/core/error.h"
#include "dinv/core/util.h"
#include "dinv/dist/world.h"
#include "dinv/io/files.h"
#include "dinv/store/h5.h"

namespace dinv::classify {
namespace {

void write_vector(const h5::Handle& file, const std::string& name, const at::Tensor& values) {
  std::vector<std::int64_t> dims(values.sizes().begin(), values.sizes().end());
  h5::Handle ds = h5::create_dataset(file, name, values.scalar_type(), dims);
  if (values.numel() > 0) h5::write_rows(ds, name, 0, values.contiguous(), false);
}

at::Tensor per_class_table(const std::vector<EvalResult>& evals, std::size_t classes) {
  at::Tensor t = at::zeros({static_cast<std::int64_t>(evals.size()), static_cast<std::int64_t>(classes)}, at::kDouble);
  for (std::size_t i = 0; i < evals.size(); ++i)
    for (std::size_t c = 0; c < classes && c < evals[i].per_class_accuracy.size(); ++c)
      t[i][c] = evals[i].per_class_accuracy[c];
  return t;
}

void write_attributes(const h5::Handle& file, const TrainResult& r, const RunInfo& info) {
  h5::set_attribute(file, "schema", std::string(kResultsSchema));
  h5::set_attribute(file, "run", info.run_name);
  h5::set_attribute(file, "config", info.config_ini);
  h5::set_attribute(file, "device", info.device);
  h5::set_attribute(file, "world_size", static_cast<std::int64_t>(info.world_size));
  h5::set_attribute(file, "global_batch", info.global_batch);
  h5::set_attribute(file, "class_names", info.class_names);
  for (const auto& [name, fp] : info.fingerprints) h5::set_attribute(file, "fingerprint." + name, fp);
  h5::set_attribute(file, "steps", r.steps_done);
  h5::set_attribute(file, "final_accuracy", r.final_eval().accuracy);
  h5::set_attribute(file, "final_loss", r.final_eval().loss);
  h5::set_attribute(file, "best_accuracy", r.best.accuracy);
  h5::set_attribute(file, "best_step", r.best.step);
  h5::set_attribute(file, "train_seconds", r.train_seconds);
  h5::set_attribute(file, "eval_seconds", r.eval_seconds);
  const double trained_steps = static_cast<double>(r.steps_done - r.resumed_from);
  h5::set_attribute(
      file, "images_per_second",
      r.train_seconds > 0 ? trained_steps * static_cast<double>(info.global_batch) / r.train_seconds : 0.0);
  h5::set_attribute(file, "resumed_from", r.resumed_from);
}

// The images behind the run, as indices and fingerprints (docs/architecture.md).
void write_selection(const h5::Handle& file, const SelectionRecord& s) {
  h5::create_group(file, "selection");
  if (s.has_real) {
    write_vector(file, "selection/real_index", at::tensor(s.real_index, at::kLong));
    h5::set_attribute(file, "selection.real_fingerprint", s.real_fingerprint);
    h5::set_attribute(file, "selection.real_count", static_cast<std::int64_t>(s.real_index.size()));
  }
  if (s.synthetic_tags.empty()) return;
  h5::create_group(file, "selection/synthetic");
  for (std::size_t t = 0; t < s.synthetic_tags.size(); ++t)
    write_vector(file, "selection/synthetic/" + s.synthetic_tags[t], at::tensor(s.synthetic_rows[t], at::kLong));
  h5::set_attribute(file, "selection.synthetic_tags", join(s.synthetic_tags, ","));
  h5::set_attribute(file, "selection.synthetic_count", s.synthetic_count);
  h5::set_attribute(file, "selection.synthetic_fingerprint", s.synthetic_fingerprint);
  h5::set_attribute(file, "selection.follow_real", static_cast<std::int64_t>(s.follow_real ? 1 : 0));
  h5::set_attribute(file, "selection.per_source", s.per_source);
  h5::set_attribute(file, "selection.total", s.total);
}

}  // namespace

void write_results(const std::string& path, const TrainResult& r, const RunInfo& info) {
  if (r.evals.empty()) throw Error("results for run '" + info.run_name + "': no evaluation was made");
  const std::filesystem::path target(path);
  if (target.has_parent_path()) std::filesystem::create_directories(target.parent_path());
  const std::string tmp = path + ".tmp";
  {
    h5::Handle file = h5::create_file(tmp, dist::this_rank_only());
    h5::create_group(file, "history");
    h5::create_group(file, "eval");
    h5::create_group(file, "final");
    write_vector(file, "history/step", at::tensor(r.steps, at::kLong));
    write_vector(file, "history/lr", at::tensor(r.lr, at::kDouble));
    write_vector(file, "history/train_loss", at::tensor(r.loss, at::kDouble));
    std::vector<std::int64_t> eval_steps;
    std::vector<double> acc, loss;
    for (const auto& e : r.evals) {
      eval_steps.push_back(e.step);
      acc.push_back(e.accuracy);
      loss.push_back(e.loss);
    }
    write_vector(file, "eval/step", at::tensor(eval_steps, at::kLong));
    write_vector(file, "eval/accuracy", at::tensor(acc, at::kDouble));
    write_vector(file, "eval/loss", at::tensor(loss, at::kDouble));
    const std::size_t classes = r.final_eval().per_class_accuracy.size();
    write_vector(file, "eval/per_class_accuracy", per_class_table(r.evals, classes));
    write_vector(file, "final/per_class_accuracy", at::tensor(r.final_eval().per_class_accuracy, at::kDouble));
    write_attributes(file, r, info);
    write_selection(file, info.selection);
    h5::set_attribute(file, "complete", static_cast<std::int64_t>(1));
    h5::flush(file, tmp);
    file.close("results file " + tmp);
  }
  io::replace_file(tmp, path, "results file");
}

bool results_complete(const std::string& path) {
  if (!std::filesystem::exists(path)) return false;
  try {
    h5::Handle file = h5::open_file_serial(path);
    return h5::has_attribute(file, "complete") && h5::int_attribute(file, "complete", path) == 1 &&
           h5::string_attribute(file, "schema", path) == kResultsSchema;
  } catch (const Error&) {
    return false;  // unreadable: rerun the point
  }
}

}  // namespace dinv::classify
