// The command table and the configuration schema of the whole program.
#include "dinv/cli/command.h"

#include "dinv/classify/options.h"
#include "dinv/core/error.h"
#include "dinv/cli/data_command.h"
#include "dinv/cli/slurm.h"
#include "dinv/data/readers.h"
#include "dinv/diffusion/scheduler.h"
#include "dinv/generation/generate.h"
#include "dinv/inversion/embed.h"
#include "dinv/pretrain/pretrain.h"
#include "dinv/evaluate/evaluate.h"
#include "dinv/retrieve/retrieve.h"

namespace dinv::cli {

int run_info(CommandContext& ctx);
int run_model(dist::World& world, const std::vector<std::string>& args);
int run_embed(CommandContext& ctx);
int run_generate(CommandContext& ctx);
int run_pretrain(CommandContext& ctx);
int run_evaluate(CommandContext& ctx);
int run_retrieve(CommandContext& ctx);
int run_train(CommandContext& ctx);
int run_sweep(CommandContext& ctx);
int run_slurm(CommandContext& ctx);
void register_model_options(ConfigSchema& s);

namespace {

ConfigSchema build_schema() {
  ConfigSchema s;
  register_run_options(s);
  s.add("store.path", "", "the experiment's HDF5 store (created by embed, extended by generate)");
  register_model_options(s);
  data::register_data_options(s);
  pretrain::register_pretrain_options(s);
  inversion::register_embed_options(s);
  diffusion::register_diffusion_options(s);
  generation::register_generate_options(s);
  retrieve::register_retrieve_options(s);
  classify::register_train_options(s);
  classify::register_sweep_options(s);
  evaluate::register_evaluate_options(s);
  register_slurm_options(s);
  return s;
}

std::vector<Command> build_commands() {
  std::vector<Command> c;
  c.push_back({"pretrain",
               "stage 0: train or fine-tune the Stable Diffusion generator on a captioned corpus",
               "dinv pretrain --config FILE [--section.key=value ...]\n"
               "  data.format = captioned, data.root = a folder with metadata.jsonl (file_name, text)\n"
               "  writes pretrain.output, a diffusers folder (model_index.json, unet/, vae/, text_encoder/,\n"
               "  tokenizer/, scheduler/); OUTPUT.work holds the run until it is done",
               {"run", "data", "pretrain"},
               {},
               run_pretrain});
  c.push_back({"embed",
               "stage 1: learn one conditioning tensor per real image into the store",
               "dinv embed --config FILE [--section.key=value ...]",
               {"run", "store", "model", "data", "embed"},
               {},
               run_embed});
  c.push_back({"retrieve",
               "baseline: the k nearest pool images of each real image by CLIP image features, as samples",
               "dinv retrieve --config FILE [--section.key=value ...]",
               {"run", "store", "data", "retrieve"},
               {},
               run_retrieve});
  c.push_back({"generate",
               "stage 2: sample images from perturbed embeddings into the store",
               "dinv generate --config FILE [--preview N [--preview-out PATH]] [--section.key=value ...]\n"
               "  --preview N          after generating (or resuming, or finding the tag done), write a PNG of\n"
               "                       the first N finished samples beside their source images (rank 0):\n"
               "                       each row is the source image from [data] resized to save_resolution,\n"
               "                       a 3-pixel gap, then up to 8 of its samples; 1-pixel white separators\n"
               "                       (same as --generate.preview=N)\n"
               "  --preview-out PATH   where to write it (default <store.path>.preview/<tag>.png;\n"
               "                       same as --generate.preview_path=PATH)",
               {"run", "store", "model", "data", "generate", "sampler"},
               {},
               run_generate,
               nullptr,
               {{"--preview", "generate.preview"}, {"--preview-out", "generate.preview_path"}}});
  c.push_back({"train",
               "stage 3: train one classifier on real, generated or mixed data",
               "dinv train --config FILE [--section.key=value ...]",
               {"run", "data", "syn", "train"},
               {},
               run_train});
  c.push_back({"evaluate",
               "measure generated images against real ones with a classifier trained by dinv",
               "dinv evaluate --config FILE [--section.key=value ...]\n"
               "  evaluate.classifier = a folder kept by dinv train (train.save_model = true); per tag of\n"
               "  evaluate.tags (default syn.tags): FID, precision/recall, density/coverage against the real\n"
               "  images of [data], label agreement, a leak check against the test split and a memorisation\n"
               "  check against the source images, into the store's /metrics/<tag>",
               {"run", "store", "data", "syn", "evaluate"},
               {},
               run_evaluate});
  c.push_back({"sweep",
               "expand a grid of training runs and run it locally or as a Slurm array",
               "dinv sweep --config FILE [--status | --resubmit] [--section.key=value ...]\n"
               "  --status     print a table of the sweep's points: done, running, pending, failed or missing,\n"
               "               the results file and the Slurm job and state when a job id is known\n"
               "               (same as --sweep.status)\n"
               "  --resubmit   submit a job array of only the failed and missing points (same as\n"
               "               --sweep.resubmit); [slurm] / [slurm.sweep] keys given now apply to it\n"
               "  Slurm mode writes <train.results_dir>/<sweep.name>.sbatch with the [slurm] and\n"
               "  [slurm.sweep] options; --sweep.submit submits it and records the job id in\n"
               "  <sweep.name>.jobs (read by --status)",
               {"run", "data", "syn", "train", "sweep", "slurm"},
               {},
               run_sweep,
               nullptr,
               {{"--status", "sweep.status=true"}, {"--resubmit", "sweep.resubmit=true"}}});
  c.push_back({"slurm",
               "print the sbatch options of a stage from [slurm] and [slurm.STAGE] (for slurm/submit.sh)",
               "dinv slurm pretrain|embed|generate|train|sweep --config FILE [--section.key=value ...]\n"
               "  one sbatch option per line, e.g. --partition=gpu; unset keys are left out\n"
               "  (use --run.log_level=warn to get only the options on standard output)",
               {"slurm"},
               {},
               run_slurm});
  c.push_back({"model",
               "inspect, run and create Stable Diffusion model folders",
               "dinv model info|run|tokenize|init ...",
               {},
               {},
               nullptr,
               run_model});
  c.push_back({"info",
               "versions, the MPI world, the resolved configuration and the store's contents",
               "dinv info [--config FILE] [--store.path=FILE] [--section.key=value ...]",
               {"run", "store"},
               {},
               run_info});
  c.push_back({"data",
               "make the procedural shapes dataset or its captioned corpus; decode any dataset to .npy; describe one",
               "dinv data shapes|export|info ...",
               {"data", "syn"},
               {},
               nullptr,
               run_data});
  return c;
}

}  // namespace

const ConfigSchema& schema() {
  static const ConfigSchema s = build_schema();
  return s;
}

const std::vector<Command>& commands() {
  static const std::vector<Command> c = build_commands();
  return c;
}

}  // namespace dinv::cli
