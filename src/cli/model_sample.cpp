// `dinv model sample`: the guided sampling loop of stage 2 on a model folder,
// for one batch of conditioning tensors. What `dinv generate` runs per work
// unit, exposed for inspection and for the parity tests against diffusers.
//
//   dinv model sample DIR --cond c.safetensors --output out.safetensors [options]
// (`dinv model sample --help` lists the options: sample_arguments below).
//
// Without --uncond the unconditional branch is the mean of the conditioning
// batch (the method's averaged unconditional embedding). The output holds
// "latents" [B, C, h, w] float32 and "images" [B, H, W, 3] uint8; with
// --save-size the images are resized to it as the method saves them (Pillow's
// antialiased bicubic, io/resize.h).
#include <chrono>
#include <filesystem>
#include <iostream>

#include <ATen/ATen.h>

#include "dinv/cli/arguments.h"
#include "dinv/core/error.h"
#include "dinv/diffusion/sampling.h"
#include "dinv/io/png.h"
#include "dinv/io/resize.h"
#include "dinv/io/safetensors.h"
#include "dinv/sd/loader.h"

namespace dinv::cli {

namespace {

Arguments sample_arguments() {
  Arguments a("dinv model sample",
              "usage: dinv model sample DIR --cond C.safetensors --output OUT.safetensors [options]\n\n"
              "The guided sampling loop of stage 2 on a model folder, for one batch of conditioning tensors.\n"
              "Without --uncond the unconditional branch is the mean of the conditioning batch. OUT holds\n"
              "'latents' [B, C, h, w] float32 and 'images' [B, H, W, 3] uint8.");
  a.positional("DIR", "the model folder (unet/, vae/, scheduler/)")
      .value("cond", "C",
             "safetensors file: conditioning [B, T, D] (tensor 'cond', "
             "'encoder_hidden_states' or the only one)")
      .value("output", "OUT", "safetensors file written with 'latents' and 'images'")
      .value("uncond", "U",
             "safetensors file: unconditional embedding [1 or B, T, D] (tensor 'uncond', 'cond' "
             "or the only one); default: the mean of the conditioning batch")
      .value("sampler", "S", "folder (the folder's scheduler, default), ddim, pndm, dpmpp, euler or euler_a")
      .value("steps", "N", "denoising steps (default 50)")
      .value("guidance", "W", "classifier-free guidance scale, >= 0 (default 2)")
      .value("seed", "S", "run seed; sample i draws from a generator seeded by (S, first index + i) (default 0)")
      .value("eta", "E", "DDIM: 0 deterministic (default), 1 DDPM-like")
      .value("spacing", "SP", "timestep spacing: folder (default), leading, trailing or linspace")
      .flag("karras", "DPM-Solver++ / Euler: Karras sigmas")
      .value("first-index", "I", "global index of the first sample, which seeds its generator (default 0)")
      .value("height", "H", "image height in pixels, a multiple of the VAE factor (default: the UNet's)")
      .value("width", "W", "image width in pixels, a multiple of the VAE factor (default: the UNet's)")
      .value("latents", "L", "safetensors file: initial latents [B, C, h, w] instead of the first draw")
      .value("device", "D", "cpu (default), cuda or cuda:N")
      .value("save-size", "N|HxW", "resize the images to N x N or H x W as the method saves them (antialiased bicubic)")
      .value("png", "DIR", "also write the images as DIR/NNNNNN.png (NNNNNN: the sample's global index)");
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
  Arguments a = sample_arguments();
  if (!a.parse_or_print_help(args)) return 0;
  const std::string dir = a.one_positional("model folder");
  a.require("cond");
  a.require("output");
  sd::LoadOptions lo;
  lo.device = parse_device(a.get("device", "cpu"));

  diffusion::SamplerOptions so;
  so.name = a.get("sampler", "folder");
  so.timestep_spacing = a.get("spacing", "folder");
  so.eta = a.real("eta", 0.0);
  so.karras_sigmas = a.is_set("karras");
  auto scheduler =
      diffusion::make_scheduler(diffusion::SchedulerConfig::from_file(dir + "/scheduler/scheduler_config.json"), so);

  at::InferenceMode guard;
  auto unet = sd::load_unet(dir, lo);
  auto vae = sd::load_vae(dir, lo);
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

  const at::Tensor cond = read_one_tensor(a.get("cond"), {"cond", "encoder_hidden_states"}).to(lo.device);
  const at::Tensor uncond = a.has("uncond") ? read_one_tensor(a.get("uncond"), {"uncond", "cond"}).to(lo.device)
                                            : (cond.dim() == 3 ? cond.mean(0, true) : cond);
  const at::Tensor latents = a.has("latents") ? read_one_tensor(a.get("latents"), {"latents"}) : at::Tensor();

  diffusion::Denoiser denoiser = [&](const at::Tensor& x, const at::Tensor& t, const at::Tensor& c) {
    return unet->forward(x, t, c);
  };
  const auto shift = vae->config().shift_factor.value_or(0.0);
  diffusion::Decoder decoder = [&](const at::Tensor& z) { return vae->decode(z + shift); };
  const auto save_size =
      a.has("save-size") ? parse_size(a.get("save-size")) : std::pair<std::int64_t, std::int64_t>{0, 0};
  const auto start = std::chrono::steady_clock::now();
  const auto result = diffusion::sample_guided(denoiser, decoder, *scheduler, cond, uncond, o, latents);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  at::Tensor images = result.images.to(at::kCPU);
  if (save_size.first > 0) images = io::resize(images, save_size.first, save_size.second, io::ResizeFilter::bicubic);
  io::write_safetensors(a.get("output"),
                        {{"latents", result.latents.to(at::kCPU).contiguous()}, {"images", images.contiguous()}});
  if (a.has("png")) write_pngs(a.get("png"), images, o.first_sample_index);
  std::cout << "dinv model sample: " << cond.size(0) << " samples, " << scheduler->name() << " " << o.steps
            << " steps, guidance " << o.guidance << " in " << seconds << " s (loop and decode) -> " << a.get("output")
            << "\n";
  return 0;
}

}  // namespace dinv::cli
