// `dinv model sample`: the guided sampling loop of stage 2 on a model folder,
// for one batch of conditioning tensors. What `dinv generate` runs per work
// unit, exposed for inspection and for the parity tests against diffusers.
//
//   dinv model sample DIR --cond c.safetensors [--uncond u.safetensors]
//        [--sampler folder|ddim|pndm|dpmpp|euler|euler_a] [--steps N] [--guidance W] [--seed S]
//        [--eta E] [--spacing folder|leading|trailing|linspace] [--karras] [--first-index I]
//        [--height H] [--width W] [--latents l.safetensors] [--device D]
//        [--save-size N|HxW] --output out.safetensors [--png DIR]
//
// Without --uncond the unconditional branch is the mean of the conditioning
// batch (the method's averaged unconditional embedding). The output holds
// "latents" [B, C, h, w] float32 and "images" [B, H, W, 3] uint8; with
// --save-size the images are resized to it as the method saves them (Pillow's
// antialiased bicubic, io/resize.h).
#include <chrono>
#include <filesystem>
#include <iostream>
#include <map>
#include <set>

#include <ATen/ATen.h>

#include "dinv/core/error.h"
#include "dinv/diffusion/sampling.h"
#include "dinv/io/png.h"
#include "dinv/io/resize.h"
#include "dinv/io/safetensors.h"
#include "dinv/sd/loader.h"

namespace dinv::cli {

namespace {

const std::set<std::string> kValueOptions = {"cond",   "uncond",  "sampler",     "steps",    "guidance", "seed",
                                             "eta",    "spacing", "first-index", "height",   "width",    "latents",
                                             "device", "output",  "png",         "save-size"};

struct SampleArgs {
  std::string dir;
  std::map<std::string, std::string> options;
  bool karras = false;

  bool has(const std::string& k) const { return options.count(k) > 0; }
  std::string get(const std::string& k, const std::string& fallback) const { return has(k) ? options.at(k) : fallback; }
  double real(const std::string& k, double fallback) const;
  std::int64_t integer(const std::string& k, std::int64_t fallback) const;
};

double SampleArgs::real(const std::string& k, double fallback) const {
  if (!has(k)) return fallback;
  try {
    std::size_t pos = 0;
    double v = std::stod(options.at(k), &pos);
    if (pos == options.at(k).size()) return v;
  } catch (const std::exception&) {
  }
  throw ConfigError("dinv model sample: --" + k + " expects a number, got '" + options.at(k) + "'");
}

std::int64_t SampleArgs::integer(const std::string& k, std::int64_t fallback) const {
  if (!has(k)) return fallback;
  try {
    std::size_t pos = 0;
    long long v = std::stoll(options.at(k), &pos);
    if (pos == options.at(k).size()) return v;
  } catch (const std::exception&) {
  }
  throw ConfigError("dinv model sample: --" + k + " expects an integer, got '" + options.at(k) + "'");
}

SampleArgs parse_sample_args(const std::vector<std::string>& args) {
  SampleArgs a;
  std::vector<std::string> positional;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& s = args[i];
    if (s.rfind("--", 0) != 0) {
      positional.push_back(s);
      continue;
    }
    std::string key = s.substr(2), value;
    const auto eq = key.find('=');
    if (eq == std::string::npos && key == "karras") {
      a.karras = true;
      continue;
    }
    if (eq != std::string::npos) {
      value = key.substr(eq + 1);
      key = key.substr(0, eq);
    } else if (kValueOptions.count(key)) {
      if (i + 1 >= args.size()) throw ConfigError("dinv model sample: option --" + key + " needs a value");
      value = args[++i];
    }
    if (!kValueOptions.count(key)) throw ConfigError("dinv model sample: unknown option '--" + key + "'");
    a.options[key] = value;
  }
  if (positional.size() != 1)
    throw ConfigError("dinv model sample: expected one model folder, got " + std::to_string(positional.size()) +
                      " positional arguments");
  a.dir = positional[0];
  for (const char* k : {"cond", "output"})
    if (!a.has(k)) throw ConfigError(std::string("dinv model sample: --") + k + " is required");
  return a;
}

// The tensor named `preferred` in a safetensors file, or its only tensor.
at::Tensor read_one_tensor(const std::string& path, const std::vector<std::string>& preferred) {
  auto tensors = io::read_safetensors(path);
  for (const auto& name : preferred)
    if (tensors.count(name)) return tensors.at(name).to(at::kFloat).clone();
  if (tensors.size() == 1) return tensors.begin()->second.to(at::kFloat).clone();
  std::string names;
  for (const auto& [k, v] : tensors) names += (names.empty() ? "" : ", ") + k;
  throw IoError(path + ": expected a tensor named " + preferred.front() + " (or a single tensor), found: " + names);
}

at::Device parse_device(const std::string& d) {
  try {
    at::Device device(d);
    if (device.is_cuda() && !at::hasCUDA())
      throw ConfigError("dinv model sample: --device " + d + " but there is no CUDA");
    return device;
  } catch (const ConfigError&) {
    throw;
  } catch (const std::exception&) {
    throw ConfigError("dinv model sample: --device '" + d + "' is not a device (cpu, cuda, cuda:N)");
  }
}

// "32" or "96x64" (height x width).
std::pair<std::int64_t, std::int64_t> parse_size(const std::string& text) {
  try {
    std::size_t pos = 0;
    const long long h = std::stoll(text, &pos);
    long long w = h;
    if (pos < text.size()) {
      if (text[pos] != 'x') throw std::invalid_argument(text);
      std::size_t pos2 = 0;
      w = std::stoll(text.substr(pos + 1), &pos2);
      if (pos + 1 + pos2 != text.size()) throw std::invalid_argument(text);
    }
    if (h >= 1 && w >= 1) return {h, w};
  } catch (const std::exception&) {
  }
  throw ConfigError("dinv model sample: --save-size '" + text + "' is not a size (allowed: N or HxW, positive)");
}

void write_pngs(const std::string& dir, const at::Tensor& images, std::int64_t first_index) {
  std::filesystem::create_directories(dir);
  for (std::int64_t b = 0; b < images.size(0); ++b) {
    char name[32];
    std::snprintf(name, sizeof name, "%06lld.png", static_cast<long long>(first_index + b));
    io::write_png((std::filesystem::path(dir) / name).string(), images[b]);
  }
}

}  // namespace

int model_sample(const std::vector<std::string>& args) {
  const SampleArgs a = parse_sample_args(args);
  sd::LoadOptions lo;
  lo.device = parse_device(a.get("device", "cpu"));

  diffusion::SamplerOptions so;
  so.name = a.get("sampler", "folder");
  so.timestep_spacing = a.get("spacing", "folder");
  so.eta = a.real("eta", 0.0);
  so.karras_sigmas = a.karras;
  auto scheduler =
      diffusion::make_scheduler(diffusion::SchedulerConfig::from_file(a.dir + "/scheduler/scheduler_config.json"), so);

  at::InferenceMode guard;
  auto unet = sd::load_unet(a.dir, lo);
  auto vae = sd::load_vae(a.dir, lo);
  const auto factor = vae->config().downsampling_factor();

  diffusion::SamplingOptions o;
  o.steps = a.integer("steps", 50);
  o.guidance = a.real("guidance", 2.0);
  o.seed = static_cast<std::uint64_t>(a.integer("seed", 0));
  o.first_sample_index = a.integer("first-index", 0);
  o.vae_scale_factor = factor;
  o.height = a.integer("height", unet->config().sample_size * factor);
  o.width = a.integer("width", unet->config().sample_size * factor);
  o.latent_channels = unet->config().in_channels;
  o.latent_scaling = vae->config().scaling_factor;
  o.cross_attention_dim = unet->config().cross_attention_dim.front();

  const at::Tensor cond = read_one_tensor(a.options.at("cond"), {"cond", "encoder_hidden_states"}).to(lo.device);
  const at::Tensor uncond = a.has("uncond") ? read_one_tensor(a.options.at("uncond"), {"uncond", "cond"}).to(lo.device)
                                            : (cond.dim() == 3 ? cond.mean(0, true) : cond);
  const at::Tensor latents = a.has("latents") ? read_one_tensor(a.options.at("latents"), {"latents"}) : at::Tensor();

  diffusion::Denoiser denoiser = [&](const at::Tensor& x, const at::Tensor& t, const at::Tensor& c) {
    return unet->forward(x, t, c);
  };
  const auto shift = vae->config().shift_factor.value_or(0.0);
  diffusion::Decoder decoder = [&](const at::Tensor& z) { return vae->decode(z + shift); };
  const auto save_size =
      a.has("save-size") ? parse_size(a.options.at("save-size")) : std::pair<std::int64_t, std::int64_t>{0, 0};
  const auto start = std::chrono::steady_clock::now();
  const auto result = diffusion::sample_guided(denoiser, decoder, *scheduler, cond, uncond, o, latents);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  at::Tensor images = result.images.to(at::kCPU);
  if (save_size.first > 0) images = io::resize(images, save_size.first, save_size.second, io::ResizeFilter::bicubic);
  io::write_safetensors(a.options.at("output"),
                        {{"latents", result.latents.to(at::kCPU).contiguous()}, {"images", images.contiguous()}});
  if (a.has("png")) write_pngs(a.options.at("png"), images, o.first_sample_index);
  std::cout << "dinv model sample: " << cond.size(0) << " samples, " << scheduler->name() << " " << o.steps
            << " steps, guidance " << o.guidance << " in " << seconds << " s (loop and decode) -> "
            << a.options.at("output") << "\n";
  return 0;
}

}  // namespace dinv::cli
