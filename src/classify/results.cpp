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

void write_vector(const h5::File& file, const std::string& name, const at::Tensor& values) {
  std::vector<std::int64_t> dims(values.sizes().begin(), values.sizes().end());
  h5::Dataset ds = file.create_dataset(name, values.scalar_type(), dims);
  if (values.numel() > 0) ds.write_rows(0, values.contiguous(), h5::Transfer::independent);
}

at::Tensor per_class_table(const std::vector<EvalResult>& evals, std::size_t classes) {
  at::Tensor t = at::zeros({static_cast<std::int64_t>(evals.size()), static_cast<std::int64_t>(classes)}, at::kDouble);
  for (std::size_t i = 0; i < evals.size(); ++i)
    for (std::size_t c = 0; c < classes && c < evals[i].per_class_accuracy.size(); ++c)
      t[i][c] = evals[i].per_class_accuracy[c];
  return t;
}

void write_attributes(const h5::File& file, const TrainResult& r, const RunInfo& info) {
  file.set_attribute("schema", std::string(kResultsSchema));
  file.set_attribute("run", info.run_name);
  file.set_attribute("config", info.config_ini);
  file.set_attribute("device", info.device);
  file.set_attribute("world_size", static_cast<std::int64_t>(info.world_size));
  file.set_attribute("global_batch", info.global_batch);
  file.set_attribute("class_names", info.class_names);
  for (const auto& [name, fp] : info.fingerprints) file.set_attribute("fingerprint." + name, fp);
  file.set_attribute("steps", r.steps_done);
  file.set_attribute("final_accuracy", r.final_eval().accuracy);
  file.set_attribute("final_loss", r.final_eval().loss);
  file.set_attribute("best_accuracy", r.best.accuracy);
  file.set_attribute("best_step", r.best.step);
  file.set_attribute("train_seconds", r.train_seconds);
  file.set_attribute("eval_seconds", r.eval_seconds);
  const double trained_steps = static_cast<double>(r.steps_done - r.resumed_from);
  file.set_attribute("images_per_second", r.train_seconds > 0
                                              ? trained_steps * static_cast<double>(info.global_batch) / r.train_seconds
                                              : 0.0);
  file.set_attribute("resumed_from", r.resumed_from);
}

// The images behind the run, as indices and fingerprints (docs/architecture.md).
void write_selection(const h5::File& file, const SelectionRecord& s) {
  file.create_group("selection");
  if (s.has_real) {
    write_vector(file, "selection/real_index", at::tensor(s.real_index, at::kLong));
    file.set_attribute("selection.real_fingerprint", s.real_fingerprint);
    file.set_attribute("selection.real_count", static_cast<std::int64_t>(s.real_index.size()));
  }
  if (s.synthetic_tags.empty()) return;
  file.create_group("selection/synthetic");
  for (std::size_t t = 0; t < s.synthetic_tags.size(); ++t)
    write_vector(file, "selection/synthetic/" + s.synthetic_tags[t], at::tensor(s.synthetic_rows[t], at::kLong));
  file.set_attribute("selection.synthetic_tags", join(s.synthetic_tags, ","));
  file.set_attribute("selection.synthetic_count", s.synthetic_count);
  file.set_attribute("selection.synthetic_fingerprint", s.synthetic_fingerprint);
  file.set_attribute("selection.follow_real", static_cast<std::int64_t>(s.follow_real ? 1 : 0));
  file.set_attribute("selection.per_source", s.per_source);
  file.set_attribute("selection.total", s.total);
}

}  // namespace

void write_results(const std::string& path, const TrainResult& r, const RunInfo& info) {
  if (r.evals.empty()) throw Error("results for run '" + info.run_name + "': no evaluation was made");
  const std::filesystem::path target(path);
  if (target.has_parent_path()) std::filesystem::create_directories(target.parent_path());
  const std::string tmp = path + ".tmp";
  {
    h5::File file = h5::File::create(tmp, dist::Comm::this_rank_only());
    file.create_group("history");
    file.create_group("eval");
    file.create_group("final");
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
    file.set_attribute("complete", static_cast<std::int64_t>(1));
    file.flush();
    file.close();
  }
  io::replace_file(tmp, path, "results file");
}

bool results_complete(const std::string& path) {
  if (!std::filesystem::exists(path)) return false;
  try {
    h5::File file = h5::File::open_serial(path);
    return file.has_attribute("complete") && file.int_attribute("complete") == 1 &&
           file.string_attribute("schema") == kResultsSchema;
  } catch (const Error&) {
    return false;  // unreadable: rerun the point
  }
}

}  // namespace dinv::classify
