// `dinv pretrain` (include/dinv/pretrain/pretrain.h): settings, the work
// folder, one training phase per component, the finished diffusers folder.
#include "dinv/pretrain/pretrain.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/optim/optimizer.h>
#include <torch/serialize/archive.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <unordered_map>

#include "dinv/classify/data_parallel.h"
#include "dinv/classify/optim.h"
#include "dinv/core/config.h"
#include "dinv/core/error.h"
#include "dinv/core/log.h"
#include "dinv/core/progress.h"
#include "dinv/core/seed.h"
#include "dinv/core/signals.h"
#include "dinv/data/captioned.h"
#include "dinv/diffusion/noise_schedule.h"
#include "dinv/dist/communicator.h"
#include "dinv/dist/control.h"
#include "dinv/dist/world.h"
#include "dinv/io/files.h"
#include "dinv/io/json.h"
#include "dinv/io/safetensors.h"
#include "dinv/sd/clip_text.h"
#include "dinv/sd/pipeline.h"
#include "dinv/sd/presets.h"

namespace dinv::pretrain {

namespace fs = std::filesystem;

namespace {

using settings::TextForm;

// Every pretrain setting, once, in the order of the help and the stored
// configuration. Text positions order the recorded settings, one
// "key = value" line each (byte for byte as before the declaration): the
// work folder's settings.txt (with the corpus) and dinv_pretrain.json's
// "settings" (without).
settings::Declaration<PretrainSettings> declare_pretrain_settings() {
  using S = PretrainSettings;
  settings::Declaration<S> d("pretrain", TextForm::lines);
  d.add("pretrain.init", &S::init,
        "starting point: preset:NAME (random weights of a preset: tiny, sd15, sd21) or a diffusers folder to "
        "fine-tune")
      .non_empty()
      .changes(0);
  d.add("pretrain.output", &S::output, "the diffusers folder written when training is done").non_empty();
  d.add_choice("pretrain.component", &S::component, kComponentNames,
               "what is trained: unet, vae, or both (the VAE first, then the UNet)")
      .changes(1);
  d.add("pretrain.steps", &S::steps, "UNet optimizer steps").min(1).changes(2);
  d.add("pretrain.vae_steps", &S::vae_steps, "VAE optimizer steps").min(1).changes(3);
  d.add("pretrain.batch_size", &S::batch_size, "global batch (divided evenly over the ranks)").min(1).changes(4);
  d.add("pretrain.lr", &S::lr, "UNet learning rate (AdamW; warm-up, then cosine decay)").greater_than(0).changes(5);
  d.add("pretrain.vae_lr", &S::vae_lr, "VAE learning rate").greater_than(0).changes(6);
  d.add("pretrain.warmup_steps", &S::warmup_steps, "linear learning-rate warm-up steps").min(0).changes(7);
  d.add("pretrain.weight_decay", &S::weight_decay, "AdamW weight decay").min(0).changes(8);
  d.add("pretrain.max_grad_norm", &S::max_grad_norm, "clip the global gradient norm to this (0: no clipping)")
      .min(0)
      .changes(9);
  d.add("pretrain.ema_decay", &S::ema_decay,
        "EMA of the weights (diffusers' EMAModel warm-up); the EMA weights are saved (0: no EMA)")
      .min(0)
      .max(0.999999)
      .changes(10);
  d.add("pretrain.caption_dropout", &S::caption_dropout,
        "fraction of captions replaced by the empty prompt, so that classifier-free guidance works")
      .min(0)
      .max(1)
      .changes(11);
  d.add("pretrain.snr_gamma", &S::snr_gamma, "min-SNR-gamma loss weighting (0: plain MSE)").min(0).changes(12);
  d.add("pretrain.kl_weight", &S::kl_weight, "weight of the VAE's KL term").min(0).changes(13);
  d.add("pretrain.cache_latents", &S::cache_latents,
        "encode the corpus with the VAE once (posterior mean and std) instead of every step")
      .changes(14)
      .spelled([](const S& s) { return s.cache_latents ? "true" : "false"; });
  d.add("pretrain.checkpoint_every", &S::checkpoint_every, "checkpoint every N steps (0: only on SIGTERM/SIGUSR2)")
      .min(0);
  d.add("pretrain.bucket_mb", &S::bucket_mb, "gradient all-reduce bucket size in MiB").greater_than(0);
  d.use("run.seed", &S::seed).changes(15);
  d.use("run.progress", &S::progress);
  // Only the work folder records it; the finished folder keeps the corpus apart.
  d.derived("corpus", &S::corpus, "corpus")
      .changes(16)
      .only_when([](const S& s) { return !s.corpus.empty(); }, "a run is under way");
  return d;
}

}  // namespace

const settings::Declaration<PretrainSettings>& pretrain_declaration() {
  static const auto declaration = declare_pretrain_settings();
  return declaration;
}

void register_pretrain_options(ConfigSchema& s) { pretrain_declaration().register_options(s); }

PretrainSettings pretrain_settings(const Config& c) {
  if (c.get_string("data.format") != "captioned")
    c.reject("data.format",
             "pretrain reads a captioned corpus: set data.format = captioned and data.root to a folder "
             "with metadata.jsonl (dinv data shapes --captioned writes one)");
  auto s = pretrain_declaration().read(c);
  if (fs::path(s.output).lexically_normal() == fs::path(s.init).lexically_normal())
    c.reject("pretrain.output", "is the same folder as pretrain.init: the starting point is never overwritten");
  return s;
}

std::string PretrainSettings::output_text() const {
  PretrainSettings finished = *this;
  finished.corpus.clear();
  return pretrain_declaration().text(finished);
}

namespace {

constexpr std::uint64_t kVaePhase = 1, kUnetPhase = 2;
constexpr const char* kRecordFile = "dinv_pretrain.json";

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// Refuses (ConfigError: `what` "other settings", each differing setting
// with both values, then `hint`) unless `recorded` is the text `now`.
void require_recorded_settings(const std::string& recorded, const std::string& now, const std::string& what,
                               const std::string& hint) {
  if (recorded == now) return;
  std::string named;
  for (const auto& d : pretrain_declaration().differences(recorded, now)) named += "\n  " + d.describe();
  // A text this build cannot take apart is still refused, quoting both whole.
  if (named.empty()) named = "\n  recorded:\n" + recorded + "\n  now:\n" + now;
  throw ConfigError(what + " other settings:" + named + "\n" + hint);
}

// Rank 0 runs `fn`; a failure there ends every rank with its message. The
// agreement is a control collective over MPI (the training communicator may
// be NCCL, which carries device tensors only).
template <class Fn>
void on_root(const dist::World& world, Fn&& fn) {
  std::exception_ptr failure;
  if (world.is_root()) {
    try {
      fn();
    } catch (...) {
      failure = std::current_exception();
    }
  }
  dist::rethrow_root_failure(world, failure);
}

// Copy a folder tree file by file (std::filesystem::copy_options::recursive
// follows libtorch's exported filesystem, whose remove_all has crashed here;
// the copy only reads and writes plain files).
void copy_tree(const fs::path& from, const fs::path& to) {
  fs::create_directories(to);
  for (const auto& entry : fs::directory_iterator(from)) {
    const fs::path target = to / entry.path().filename();
    if (entry.is_directory()) {
      copy_tree(entry.path(), target);
    } else if (entry.is_regular_file()) {
      std::error_code ec;
      fs::copy_file(entry.path(), target, fs::copy_options::overwrite_existing, ec);
      if (ec) throw IoError("cannot copy " + entry.path().string() + " to " + target.string() + ": " + ec.message());
    }
  }
}

// Remove a folder of plain files and folders, one entry at a time.
void remove_tree(const fs::path& dir) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) return;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.is_directory() && !entry.is_symlink())
      remove_tree(entry.path());
    else
      fs::remove(entry.path(), ec);
  }
  fs::remove(dir, ec);
}

struct WorkFolder {
  fs::path root, model;
  explicit WorkFolder(const std::string& output) : root(output + ".work"), model(root / "model") {}
  fs::path checkpoint(const std::string& c) const { return root / (c + ".ckpt"); }
  fs::path done(const std::string& c) const { return root / (c + ".done"); }
  fs::path settings() const { return root / "settings.txt"; }
};

// The starting diffusers folder, made once: a preset with random weights (from
// run.seed) or a copy of the folder to fine-tune.
void prepare_start(const PretrainSettings& s, const WorkFolder& w, const std::string& corpus_fingerprint) {
  PretrainSettings run = s;
  run.corpus = corpus_fingerprint;
  const std::string text = pretrain_declaration().text(run);
  fs::create_directories(w.root);
  if (fs::exists(w.settings())) {
    require_recorded_settings(
        io::read_text_file(w.settings()), text, "pretrain: " + w.root.string() + " holds a run with",
        "run with the recorded settings to continue it, or delete " + w.root.string() + " to start over");
  } else {
    io::write_text_atomic(w.settings(), text);
  }
  if (fs::exists(w.model / "model_index.json")) return;
  const fs::path creating = w.root / "model.creating";
  remove_tree(creating);
  const std::string preset_prefix = "preset:";
  if (s.init.rfind(preset_prefix, 0) == 0) {
    sd::init_model_folder(creating.string(), s.init.substr(preset_prefix.size()), s.seed);
  } else {
    if (!fs::is_regular_file(fs::path(s.init) / "model_index.json"))
      throw ConfigError("pretrain.init: " + s.init + " is neither preset:NAME nor a diffusers folder (no " +
                        (fs::path(s.init) / "model_index.json").string() + ")");
    copy_tree(s.init, creating);
  }
  fs::rename(creating, w.model);
}

// The pieces of a folder that must agree for training: the text encoder's
// width is the UNet's cross-attention width; the VAE's latent channels are the
// UNet's input channels; the corpus resolution fits both downsamplings.
void check_architecture(const sd::Pipeline& p, std::int64_t resolution, const std::string& dir) {
  const auto& u = p.unet->config();
  const auto& v = p.vae->config();
  const std::int64_t vae_factor = v.downsampling_factor();
  const std::int64_t unet_factor = std::int64_t{1} << (u.block_out_channels.size() - 1);
  if (v.latent_channels != u.in_channels)
    throw ModelError(dir + "/vae/config.json: latent_channels " + std::to_string(v.latent_channels) +
                     " but unet/config.json in_channels " + std::to_string(u.in_channels));
  const io::Json text = io::read_json_file(dir + "/text_encoder/config.json");
  const auto width = text.value("hidden_size", std::int64_t{0});
  const std::int64_t cross = u.cross_attention_dim.empty() ? 0 : u.cross_attention_dim.front();
  if (width != cross)
    throw ModelError(dir + "/text_encoder/config.json: hidden_size " + std::to_string(width) +
                     " but unet/config.json cross_attention_dim " + std::to_string(cross) +
                     ": the UNet attends to the text encoder's output");
  if (resolution % (vae_factor * unet_factor) != 0)
    throw ModelError("pretrain: the corpus's " + std::to_string(resolution) + " px images do not fit " + dir +
                     ": the VAE downsamples by " + std::to_string(vae_factor) + " and the UNet by " +
                     std::to_string(unet_factor) + ", so the resolution must be a multiple of " +
                     std::to_string(vae_factor * unet_factor));
}

// The corpus in memory: uint8 images [N, R, R, 3] and their captions.
struct CorpusInMemory {
  at::Tensor images;
  std::vector<std::string> captions;
};

CorpusInMemory load_corpus(const data::CaptionedDataset& corpus) {
  const std::int64_t n = corpus.size(), r = corpus.resolution();
  CorpusInMemory m{at::empty({n, r, r, 3}, at::kByte), std::vector<std::string>(static_cast<std::size_t>(n))};
  at::parallel_for(0, n, 64, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t i = b; i < e; ++i) {
      data::CaptionedExample ex = corpus.get(i);
      m.images[i].copy_(ex.image);
      m.captions[static_cast<std::size_t>(i)] = std::move(ex.text);
    }
  });
  return m;
}

// uint8 [B, R, R, 3] -> float [B, 3, R, R] in [-1, 1] on `device`.
at::Tensor to_model_input(const at::Tensor& images, c10::Device device) {
  return images.permute({0, 3, 1, 2}).to(at::kFloat).div(127.5).sub(1.0).contiguous().to(device);
}

// Standard deviation of a posterior sample (mean + std * eps) over a set of
// latents: sqrt(var(mean) + E[std^2]), exact, with no noise drawn.
double latent_spread(const at::Tensor& mean, const at::Tensor& std) {
  return std::sqrt(mean.var().item<double>() + std.square().mean().item<double>());
}

// The frozen text encoder's output per caption, computed once. A corpus
// repeats every caption each epoch (the main job's UNet ran 7% more steps/s
// once its captions repeated). Each caption is encoded alone, so its encoding
// does not depend on the batch (or the rank count) it first appears in.
// Memory is bounded: past kBudgetBytes, captions not yet seen are encoded
// every time they appear.
class CaptionEncodings {
 public:
  explicit CaptionEncodings(sd::Pipeline& pipeline) : pipeline_(pipeline) {}

  // [B, T, D]: the encodings of `captions`, in order.
  at::Tensor batch(const std::vector<std::string>& captions) {
    std::vector<at::Tensor> rows;
    rows.reserve(captions.size());
    for (const auto& caption : captions) rows.push_back(encoding(caption));
    return at::cat(rows);
  }

 private:
  static constexpr std::size_t kBudgetBytes = std::size_t{1} << 30;

  at::Tensor encoding(const std::string& caption) {
    if (const auto it = cache_.find(caption); it != cache_.end()) return it->second;
    at::Tensor e = pipeline_.encode_prompts({caption});  // [1, T, D]
    const std::size_t bytes = e.nbytes();
    if (bytes_ + bytes <= kBudgetBytes) {
      bytes_ += bytes;
      cache_.emplace(caption, e);
    }
    return e;
  }

  sd::Pipeline& pipeline_;
  std::unordered_map<std::string, at::Tensor> cache_;
  std::size_t bytes_ = 0;
};

// One component's training: data order, randomness, data-parallel steps,
// EMA, checkpoints.
class Phase {
 public:
  Phase(const dist::World& world, dist::Communicator& comm, const PretrainSettings& s, const CorpusInMemory& corpus,
        sd::Pipeline& pipeline, const WorkFolder& work, std::string component)
      : world_(world),
        comm_(comm),
        s_(s),
        corpus_(corpus),
        p_(pipeline),
        work_(work),
        component_(std::move(component)),
        unet_(component_ == "unet"),
        steps_(unet_ ? s.steps : s.vae_steps),
        schedule_(diffusion::SchedulerConfig::from_file(pipeline.dir + "/scheduler/scheduler_config.json")) {
    if (s.batch_size % comm.size() != 0)
      throw ConfigError("pretrain.batch_size " + std::to_string(s.batch_size) + " is not a multiple of the " +
                        std::to_string(comm.size()) + " ranks");
    if (corpus.captions.size() < static_cast<std::size_t>(s.batch_size))
      throw ConfigError("pretrain: the corpus has " + std::to_string(corpus.captions.size()) +
                        " images, fewer than one batch (pretrain.batch_size = " + std::to_string(s.batch_size) + ")");
    torch::nn::Module& trained = unet_ ? static_cast<torch::nn::Module&>(*p_.unet) : *p_.vae;
    trained.train();
    for (auto& t : trained.parameters()) {
      t.set_requires_grad(true);
      params_.push_back(t);
    }
    classify::OptimizerOptions o;
    o.name = "adamw";
    o.lr = unet_ ? s.lr : s.vae_lr;
    o.weight_decay = s.weight_decay;
    optimizer_ = classify::make_optimizer(params_, o);
    if (comm.size() > 1)
      buckets_ = std::make_unique<classify::GradientBuckets>(params_, comm,
                                                             static_cast<std::int64_t>(s.bucket_mb * 1024 * 1024));
    if (s.ema_decay > 0)
      for (const auto& t : params_) ema_.push_back(t.detach().clone());
  }

  // Train to the end or to a stop signal; true when stopped.
  bool run() {
    std::int64_t step = load_checkpoint();
    if (step > 0) log::info("pretrain " + component_ + ": resuming at step " + std::to_string(step));
    if (unet_ && s_.cache_latents) cache_latents();
    Progress progress("pretrain " + component_, steps_, "steps",
                      comm_.rank() != 0 || s_.progress == "off" ? Progress::Style::silent : Progress::Style::automatic);
    progress.set_already_done(step);
    const auto start = std::chrono::steady_clock::now();
    for (; step < steps_; ++step) {
      const auto [loss, stop] = classify::agree_on_step(&comm_, train_step(step));
      losses_.push_back(loss);
      progress.advance(1, "loss " + std::to_string(loss).substr(0, 7));
      const bool last = step + 1 == steps_;
      const bool periodic = s_.checkpoint_every > 0 && (step + 1) % s_.checkpoint_every == 0;
      if (!last && (periodic || stop)) save_checkpoint(step + 1);
      if (stop && !last) {
        log::info("pretrain " + component_ + ": stop requested (signal " + std::to_string(signals::stop_signal()) +
                  "): checkpoint written at step " + std::to_string(step + 1) + "; rerun the same command to resume");
        return true;
      }
    }
    progress.finish();
    seconds_ += seconds_since(start);
    finish();
    return false;
  }

 private:
  // Global batch positions [step * B, (step + 1) * B) walk through one
  // permutation of the corpus per epoch; this rank takes its contiguous slice.
  std::vector<std::int64_t> batch_indices(std::int64_t step, std::int64_t first, std::int64_t count) {
    const std::int64_t n = static_cast<std::int64_t>(corpus_.captions.size());
    std::vector<std::int64_t> out;
    for (std::int64_t j = first; j < first + count; ++j) {
      const std::int64_t position = step * s_.batch_size + j;
      const std::int64_t epoch = position / n;
      if (epoch != epoch_) {
        auto gen = at::detail::createCPUGenerator(
            stream_seed(s_.seed, Stage::pretrain, {phase_id(), static_cast<std::uint64_t>(epoch)}));
        permutation_ = at::randperm(n, gen, at::kLong);
        epoch_ = epoch;
      }
      out.push_back(permutation_[position % n].item<std::int64_t>());
    }
    return out;
  }
  std::uint64_t phase_id() const { return unet_ ? kUnetPhase : kVaePhase; }

  // Each sample's randomness comes from its own stream (seed, phase, step,
  // position in the global batch): independent of the rank count.
  struct SampleNoise {
    at::Tensor posterior_eps, noise, timesteps;
    std::vector<bool> dropped;
  };
  SampleNoise draw(std::int64_t step, std::int64_t first, std::int64_t count, at::IntArrayRef latent_shape) {
    SampleNoise n;
    std::vector<at::Tensor> eps, noise, t;
    for (std::int64_t j = first; j < first + count; ++j) {
      auto gen = at::detail::createCPUGenerator(stream_seed(
          s_.seed, Stage::pretrain, {phase_id(), static_cast<std::uint64_t>(step), static_cast<std::uint64_t>(j)}));
      eps.push_back(at::randn(latent_shape, gen, at::kFloat));
      noise.push_back(at::randn(latent_shape, gen, at::kFloat));
      t.push_back(at::randint(0, schedule_.num_train_timesteps(), {1}, gen, at::kLong));
      n.dropped.push_back(at::rand({1}, gen, at::kDouble).item<double>() < s_.caption_dropout);
    }
    n.posterior_eps = at::stack(eps);
    n.noise = at::stack(noise);
    n.timesteps = at::cat(t);
    return n;
  }

  at::IntArrayRef latent_shape() {
    if (latent_shape_.empty()) {
      const std::int64_t r = corpus_.images.size(1);
      const auto& v = p_.vae->config();
      const std::int64_t f = v.downsampling_factor();
      latent_shape_ = {v.latent_channels, r / f, r / f};
    }
    return latent_shape_;
  }

  // This rank's loss of the step (detached, on the model's device).
  at::Tensor train_step(std::int64_t step) {
    const std::int64_t local = s_.batch_size / comm_.size(), first = comm_.rank() * local;
    const std::vector<std::int64_t> idx = batch_indices(step, first, local);
    const at::Tensor index = at::tensor(idx, at::kLong);
    const SampleNoise n = draw(step, first, local, latent_shape());
    const c10::Device dev = p_.device;
    classify::set_learning_rate(*optimizer_,
                                (unet_ ? s_.lr : s_.vae_lr) * classify::lr_factor(step, steps_, s_.warmup_steps));
    optimizer_->zero_grad();
    if (buckets_) buckets_->begin_step();
    at::Tensor loss;
    if (unet_) {
      at::Tensor latents, cond;
      {
        at::NoGradGuard no_grad;
        latents = posterior_sample(index, n.posterior_eps.to(dev));
        latents = p_.vae->scale_latents(latents);
        std::vector<std::string> prompts;
        for (std::size_t k = 0; k < idx.size(); ++k)
          prompts.push_back(n.dropped[k] ? std::string() : corpus_.captions[static_cast<std::size_t>(idx[k])]);
        cond = captions_.batch(prompts);
      }
      loss = unet_loss(p_.unet, schedule_, latents, n.noise.to(dev), n.timesteps.to(dev), cond, s_.snr_gamma);
    } else {
      loss = vae_loss(p_.vae, to_model_input(corpus_.images.index_select(0, index), dev), n.posterior_eps.to(dev),
                      s_.kl_weight);
    }
    if (!std::isfinite(loss.item<double>()))
      throw Error("pretrain " + component_ + ": the loss is not finite at step " + std::to_string(step) +
                  " (lower pretrain." + (unet_ ? "lr" : "vae_lr") + "; the last checkpoint is kept in " +
                  work_.checkpoint(component_).string() + ")");
    loss.backward();
    if (buckets_) buckets_->finish_step();
    clip_gradients();
    optimizer_->step();
    update_ema(step);
    return loss.detach();
  }

  // VAE posterior sample of corpus images: cached moments or a fresh encode.
  at::Tensor posterior_sample(const at::Tensor& index, const at::Tensor& eps) {
    if (latent_mean_.defined())
      return latent_mean_.index_select(0, index).to(p_.device) + latent_std_.index_select(0, index).to(p_.device) * eps;
    const sd::DiagonalGaussian post = p_.vae->encode(to_model_input(corpus_.images.index_select(0, index), p_.device));
    return post.mean + post.std * eps;
  }

  // Each rank encodes an equal share of the corpus; every rank gets all of it.
  void cache_latents() {
    at::NoGradGuard no_grad;
    const auto t0 = std::chrono::steady_clock::now();
    const std::int64_t n = corpus_.images.size(0), ranks = comm_.size(), share = (n + ranks - 1) / ranks;
    const std::int64_t begin = std::min(n, comm_.rank() * share), end = std::min(n, begin + share);
    const auto shape = latent_shape();
    // Rank r encodes images [r * share, (r + 1) * share), slice after slice;
    // each slice is gathered at once (on the model's device, through the
    // training communicator), so that the device never holds more than one
    // slice per rank. Every rank runs as many slices (rows past the corpus's
    // end are zeros).
    at::Tensor all = at::empty({ranks * share, 2, shape[0], shape[1], shape[2]}, at::kFloat);
    for (std::int64_t s0 = 0; s0 < share; s0 += kImagesPerSlice) {
      const std::int64_t s1 = std::min(share, s0 + kImagesPerSlice);
      at::Tensor moments = at::zeros({s1 - s0, 2, shape[0], shape[1], shape[2]}, at::TensorOptions(p_.device));
      const std::int64_t b = std::min(end, begin + s0), e = std::min(end, begin + s1);
      if (b < e) {
        const sd::DiagonalGaussian post =
            p_.vae->encode(to_model_input(corpus_.images.slice(0, b, e), p_.device), images_per_encode());
        moments.slice(0, 0, e - b).select(1, 0).copy_(post.mean);
        moments.slice(0, 0, e - b).select(1, 1).copy_(post.std);
      }
      const at::Tensor gathered =
          (ranks > 1 ? comm_.all_gather(moments) : moments.unsqueeze(0)).to(at::kCPU, at::kFloat);
      for (std::int64_t r = 0; r < ranks; ++r) all.slice(0, r * share + s0, r * share + s1).copy_(gathered[r]);
    }
    all = all.slice(0, 0, n);
    latent_mean_ = all.select(1, 0).contiguous();
    latent_std_ = all.select(1, 1).contiguous();
    check_latent_scale();
    log::info("pretrain unet: VAE latents of " + std::to_string(n) + " images cached in " +
              std::to_string(seconds_since(t0)).substr(0, 5) + " s");
  }

  // Corpus images go to the device kImagesPerSlice at a time, and through the
  // VAE encoder at most images_per_encode() at a time: its activations grow
  // with the pixels (four 512 px images per pass, all 256 of a slice at 64 px
  // and below).
  static constexpr std::int64_t kImagesPerSlice = 256;
  std::int64_t images_per_encode() const {
    const std::int64_t side = corpus_.images.size(1);
    return std::clamp<std::int64_t>(4 * 512 * 512 / (side * side), 1, kImagesPerSlice);
  }

  // torch.nn.utils.clip_grad_norm_: one norm over every gradient, as foreach
  // calls rather than a few small ops (and a sync) per tensor.
  void clip_gradients() {
    if (s_.max_grad_norm <= 0) return;
    at::NoGradGuard no_grad;
    std::vector<at::Tensor> grads;
    for (const auto& t : params_)
      if (t.grad().defined()) grads.push_back(t.grad());
    if (grads.empty()) return;
    const double norm = at::stack(at::_foreach_norm(grads)).to(at::kDouble).norm().item<double>();
    const double coef = s_.max_grad_norm / (norm + 1e-6);
    if (coef < 1) at::_foreach_mul_(grads, coef);
  }

  // diffusers' EMAModel: decay = min(ema_decay, (1 + k) / (10 + k)) at the
  // k-th update (k from 0).
  void update_ema(std::int64_t step) {
    if (ema_.empty()) return;
    at::NoGradGuard no_grad;
    const double k = static_cast<double>(step);
    const double decay = std::min(s_.ema_decay, (1 + k) / (10 + k));
    at::_foreach_lerp_(ema_, params_, 1 - decay);  // ema += (1 - decay) * (param - ema)
  }

  // Latent Diffusion's rule for a freshly trained autoencoder: scale the
  // latents to unit variance, so that the noise schedule's signal-to-noise
  // ratios mean what they were designed to mean (SD's 0.18215 is this number
  // for its own VAE; a new VAE's latents have another spread, and a UNet
  // trained on latents of std 0.2 sees almost only noise). The trained (EMA)
  // weights encode the first kCalibrationImages corpus images (latent_spread).
  // The factor goes into vae/config.json before the UNet
  // phase loads it.
  double calibrate_latent_scale(const fs::path& vae_dir) {
    constexpr std::int64_t kCalibrationImages = 2048;
    at::NoGradGuard no_grad;
    if (!ema_.empty())
      for (std::size_t i = 0; i < params_.size(); ++i) params_[i].copy_(ema_[i]);
    p_.vae->eval();
    const std::int64_t n = std::min<std::int64_t>(kCalibrationImages, corpus_.images.size(0));
    std::vector<at::Tensor> means, stds;  // on the CPU: only one slice of images is on the device at a time
    for (std::int64_t b = 0; b < n; b += kImagesPerSlice) {
      const std::int64_t e = std::min(n, b + kImagesPerSlice);
      const auto post = p_.vae->encode(to_model_input(corpus_.images.slice(0, b, e), p_.device), images_per_encode());
      means.push_back(post.mean.to(at::kCPU, at::kDouble));
      stds.push_back(post.std.to(at::kCPU, at::kDouble));
    }
    const double spread = latent_spread(at::cat(means), at::cat(stds));
    if (!(spread > 0) || !std::isfinite(spread))
      throw Error("pretrain vae: the trained VAE's latents have spread " + std::to_string(spread) +
                  " on the corpus; no scaling_factor can be set (lower pretrain.vae_lr)");
    const fs::path config = vae_dir / "config.json";
    io::Json c = io::read_json_file(config.string());
    c["scaling_factor"] = 1.0 / spread;
    io::write_text_atomic(config, c.dump(2) + "\n");
    log::info("pretrain vae: latents of " + std::to_string(n) + " corpus images have std " + std::to_string(spread) +
              "; vae/config.json scaling_factor = " + std::to_string(1.0 / spread));
    return 1.0 / spread;
  }

  // A UNet trained on latents far from unit variance learns slowly or not at
  // all; say so (a VAE from elsewhere keeps its own factor).
  void check_latent_scale() const {
    const double spread = latent_spread(latent_mean_, latent_std_) * p_.vae->config().scaling_factor;
    if (spread < 0.5 || spread > 2.0)
      log::warn_job("pretrain unet: the scaled VAE latents have std " + std::to_string(spread) + " (vae/config.json " +
                    "scaling_factor " + std::to_string(p_.vae->config().scaling_factor) +
                    "); the noise schedule expects about 1: train the VAE here (pretrain.component = both) or set it");
  }

  // ---- checkpoints: rank 0 writes; every replica is identical -------------
  void save_checkpoint(std::int64_t next_step) {
    on_root(world_, [&] {
      torch::serialize::OutputArchive archive, optim;
      for (std::size_t i = 0; i < params_.size(); ++i) {
        archive.write("param/" + std::to_string(i), params_[i].detach());
        if (!ema_.empty()) archive.write("ema/" + std::to_string(i), ema_[i]);
      }
      optimizer_->save(optim);
      archive.write("optimizer", optim);
      archive.write("next_step", at::tensor({next_step}, at::kLong));
      archive.write("loss", at::tensor(losses_, at::kDouble));
      archive.write("seconds", at::tensor({seconds_}, at::kDouble));
      const std::string path = work_.checkpoint(component_).string(), tmp = path + ".tmp";
      archive.save_to(tmp);
      io::replace_file(tmp, path, "checkpoint");
    });
  }

  std::int64_t load_checkpoint() {
    const std::string path = work_.checkpoint(component_).string();
    if (!fs::exists(path)) return 0;
    torch::serialize::InputArchive archive, optim;
    try {
      archive.load_from(path, p_.device);
    } catch (const c10::Error& e) {
      throw IoError("cannot read checkpoint " + path + ": " + e.what_without_backtrace() +
                    " (delete it to start over)");
    }
    at::NoGradGuard no_grad;
    for (std::size_t i = 0; i < params_.size(); ++i) {
      at::Tensor t;
      archive.read("param/" + std::to_string(i), t);
      if (!t.sizes().equals(params_[i].sizes()))
        throw IoError("checkpoint " + path + ": parameter " + std::to_string(i) + " has shape " + c10::str(t.sizes()) +
                      ", the model " + c10::str(params_[i].sizes()) + " (delete it to start over)");
      params_[i].copy_(t);
      if (!ema_.empty()) {
        at::Tensor e;
        archive.read("ema/" + std::to_string(i), e);
        ema_[i].copy_(e);
      }
    }
    archive.read("optimizer", optim);
    optimizer_->load(optim);
    at::Tensor next, loss, seconds;
    archive.read("next_step", next);
    archive.read("loss", loss);
    archive.read("seconds", seconds);
    losses_.clear();
    for (std::int64_t i = 0; i < loss.size(0); ++i) losses_.push_back(loss[i].item<double>());
    seconds_ = seconds.item<double>();
    return next.item<std::int64_t>();
  }

  // The trained weights (EMA where kept) replace the component's weight files
  // in the work folder; the phase's record marks it done.
  void finish() {
    on_root(world_, [&] {
      const fs::path dir = work_.model / component_;
      std::map<std::string, at::Tensor> tensors;
      torch::nn::Module& trained = unet_ ? static_cast<torch::nn::Module&>(*p_.unet) : *p_.vae;
      std::size_t i = 0;
      for (const auto& named : trained.named_parameters(true)) {
        tensors.emplace(named.key(), (ema_.empty() ? params_[i] : ema_[i]).detach().to(at::kCPU).contiguous());
        ++i;
      }
      for (const auto& named : trained.named_buffers(true)) tensors.emplace(named.key(), named.value().to(at::kCPU));
      const fs::path weights = dir / "diffusion_pytorch_model.safetensors", tmp = dir / "weights.safetensors.tmp";
      io::write_safetensors(tmp.string(), tensors, {{"format", "pt"}});
      for (const auto& entry : fs::directory_iterator(dir)) {
        const std::string name = entry.path().filename().string();
        if (name != "config.json" && name != tmp.filename().string()) fs::remove(entry.path());
      }
      fs::rename(tmp, weights);
      io::Json record = {{"component", component_}, {"steps", steps_}, {"seconds", seconds_}, {"loss", losses_}};
      if (!unet_) record["scaling_factor"] = calibrate_latent_scale(dir);
      io::write_text_atomic(work_.done(component_), record.dump());
      fs::remove(work_.checkpoint(component_));
    });
  }

  const dist::World& world_;
  dist::Communicator& comm_;
  const PretrainSettings& s_;
  const CorpusInMemory& corpus_;
  sd::Pipeline& p_;
  const WorkFolder& work_;
  std::string component_;
  bool unet_;
  std::int64_t steps_;
  diffusion::NoiseSchedule schedule_;
  std::vector<at::Tensor> params_, ema_;
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  std::unique_ptr<classify::GradientBuckets> buckets_;
  CaptionEncodings captions_{p_};
  at::Tensor permutation_, latent_mean_, latent_std_;
  std::int64_t epoch_ = -1;
  std::vector<std::int64_t> latent_shape_;
  std::vector<double> losses_;
  double seconds_ = 0;
};

// The phases of a run, named as their work files and records are.
std::vector<std::string> phases_of(Component component) {
  if (component == Component::both)
    return {kComponentNames.name(Component::vae), kComponentNames.name(Component::unet)};
  return {kComponentNames.name(component)};
}

// OUTPUT/dinv_pretrain.json: what was trained, on what, how the losses went.
io::Json finished_record(const PretrainSettings& s, const WorkFolder& w, const data::CaptionedDataset& corpus) {
  io::Json phases = io::Json::object();
  for (const auto& c : phases_of(s.component))
    phases[c] = io::parse_json(io::read_text_file(w.done(c)), w.done(c).string());
  return {{"settings", s.output_text()},
          {"corpus", corpus.describe()},
          {"corpus_fingerprint", corpus.fingerprint()},
          {"phases", phases}};
}

}  // namespace

PretrainOutcome run_pretrain(dist::World& world, dist::Communicator& comm, const PretrainSettings& s,
                             const data::CaptionedDataset& corpus) {
  PretrainOutcome out;
  out.output = s.output;
  const fs::path record = fs::path(s.output) / kRecordFile;
  if (fs::exists(record)) {
    const io::Json done = io::read_json_file(record.string());
    require_recorded_settings(done.value("settings", std::string()), s.output_text(),
                              "pretrain.output " + s.output + " was trained with",
                              "choose another pretrain.output, or delete it to train again");
    if (done.value("corpus_fingerprint", std::string()) != corpus.fingerprint())
      throw ConfigError("pretrain.output " + s.output + " was trained on another corpus (" +
                        done.value("corpus", std::string("?")) + "); choose another pretrain.output");
    log::info("pretrain: " + s.output + " is already trained with these settings; nothing to do");
    if (comm.rank() == 0) remove_tree(WorkFolder(s.output).root);  // left by a kill after the rename
    out.skipped = true;
    return out;
  }
  if (fs::exists(s.output))
    throw ConfigError("pretrain.output " + s.output + " exists but is not a finished dinv pretrain folder (no " +
                      record.string() + "); choose another pretrain.output or move it away");
  signals::install_stop_handlers();
  const WorkFolder work(s.output);
  on_root(world, [&] { prepare_start(s, work, corpus.fingerprint()); });
  comm.barrier();
  const CorpusInMemory data = load_corpus(corpus);
  log::info("pretrain: " + corpus.describe() + ", global batch " + std::to_string(s.batch_size) + " on " +
            world.describe());
  for (const auto& component : phases_of(s.component)) {
    if (fs::exists(work.done(component))) {
      out.phases_done.push_back(component);
      continue;
    }
    // Each phase loads the folder as the previous phase left it (the UNet
    // trains on the latents of the freshly trained VAE).
    auto pipeline = sd::load_pipeline(work.model.string(), world.device(), at::kFloat);
    check_architecture(*pipeline, corpus.resolution(), work.model.string());
    Phase phase(world, comm, s, data, *pipeline, work, component);
    if (phase.run()) {
      out.stopped = true;
      return out;
    }
    out.phases_done.push_back(component);
  }
  on_root(world, [&] {
    io::write_text_atomic(work.model / kRecordFile, finished_record(s, work, corpus).dump(2));
    fs::rename(work.model, s.output);
    remove_tree(work.root);
  });
  comm.barrier();
  return out;
}

}  // namespace dinv::pretrain
