// Test driver for the diffusion parity tests (tests/diffusion/*.py): runs a
// sampler or the resize on .npy inputs written by Python and writes .npy
// results for Python to compare with diffusers / Pillow.
//
//   dinv_diffusion_tool sampler --config scheduler_config.json --sampler NAME --steps N
//       [--eta E] [--spacing folder|leading|trailing|linspace] [--karras 0|1] --out DIR [--in DIR]
//     writes DIR/timesteps.npy (float64) and DIR/init_noise_sigma.npy; with --in, also runs
//     the trajectory x_{i+1} = step(model_outputs[i], i, x_i, noise[i]) from IN/sample.npy,
//     IN/model_outputs.npy [S, ...] and IN/noise.npy [S, ...] (stochastic samplers), and writes
//     DIR/samples.npy [S + 1, ...] and DIR/scaled.npy [S, ...] (the scaled model inputs).
//   dinv_diffusion_tool schedule --config scheduler_config.json --out DIR [--in DIR]
//     writes DIR/betas.npy and DIR/alphas_cumprod.npy; with --in (IN/x0.npy, IN/noise.npy,
//     IN/t.npy int64 [B]) also DIR/noisy.npy, DIR/velocity.npy and DIR/target.npy.
//   dinv_diffusion_tool resize --in image.npy --height H --width W [--filter bicubic] --out out.npy
#include <chrono>
#include <iostream>
#include <map>
#include <string>

#include <ATen/ATen.h>

#include "dinv/core/error.h"
#include "dinv/diffusion/scheduler.h"
#include "dinv/io/resize.h"
#include "npy.h"

namespace {

using dinv::test::read_npy;
using dinv::test::write_npy;

std::map<std::string, std::string> parse_flags(int argc, char** argv) {
  std::map<std::string, std::string> flags;
  for (int i = 2; i + 1 < argc; i += 2) flags[std::string(argv[i]).substr(2)] = argv[i + 1];
  return flags;
}

std::string get(const std::map<std::string, std::string>& f, const std::string& key, const std::string& fallback = "") {
  auto it = f.find(key);
  if (it != f.end()) return it->second;
  if (fallback.empty()) throw std::runtime_error("missing --" + key);
  return fallback;
}

void run_trajectory(dinv::diffusion::Scheduler& s, const std::string& in, const std::string& out) {
  at::Tensor x = read_npy(in + "/sample.npy");
  const at::Tensor outputs = read_npy(in + "/model_outputs.npy");
  const bool stochastic = s.needs_noise(0);
  const at::Tensor noise = stochastic ? read_npy(in + "/noise.npy") : at::Tensor();
  std::vector<at::Tensor> samples = {x}, scaled;
  for (std::int64_t i = 0; i < s.num_steps(); ++i) {
    scaled.push_back(s.scale_model_input(x, i));
    x = s.step(outputs[i], i, x, s.needs_noise(i) ? noise[i] : at::Tensor());
    samples.push_back(x);
  }
  write_npy(out + "/samples.npy", at::stack(samples));
  write_npy(out + "/scaled.npy", at::stack(scaled));
}

int run_sampler(const std::map<std::string, std::string>& f) {
  dinv::diffusion::SamplerOptions options;
  options.name = get(f, "sampler");
  options.eta = std::stod(get(f, "eta", "0"));
  options.timestep_spacing = get(f, "spacing", "folder");
  options.karras_sigmas = get(f, "karras", "0") == "1";
  auto config = dinv::diffusion::SchedulerConfig::from_file(get(f, "config"));
  auto s = dinv::diffusion::make_scheduler(config, options);
  s->set_timesteps(std::stoll(get(f, "steps")));
  const std::string out = get(f, "out");
  write_npy(out + "/timesteps.npy", s->timesteps().to(at::kDouble));
  write_npy(out + "/init_noise_sigma.npy", at::tensor({s->init_noise_sigma()}, at::kDouble));
  if (f.count("in")) run_trajectory(*s, f.at("in"), out);
  return 0;
}

int run_schedule(const std::map<std::string, std::string>& f) {
  const dinv::diffusion::NoiseSchedule schedule(dinv::diffusion::SchedulerConfig::from_file(get(f, "config")));
  const std::string out = get(f, "out");
  write_npy(out + "/betas.npy", schedule.betas());
  write_npy(out + "/alphas_cumprod.npy", schedule.alphas_cumprod());
  if (!f.count("in")) return 0;
  const std::string in = f.at("in");
  const at::Tensor x0 = read_npy(in + "/x0.npy"), noise = read_npy(in + "/noise.npy"), t = read_npy(in + "/t.npy");
  write_npy(out + "/noisy.npy", schedule.add_noise(x0, noise, t));
  write_npy(out + "/velocity.npy", schedule.get_velocity(x0, noise, t));
  write_npy(out + "/target.npy", schedule.training_target(x0, noise, t));
  return 0;
}

int run_resize(const std::map<std::string, std::string>& f) {
  const at::Tensor image = read_npy(get(f, "in"));
  const auto filter = dinv::io::resize_filter_from_string(get(f, "filter", "bicubic"));
  const auto start = std::chrono::steady_clock::now();
  const at::Tensor out = dinv::io::resize(image, std::stoll(get(f, "height")), std::stoll(get(f, "width")), filter);
  // For bench/resize.py: the resize alone, without process start and file I/O.
  std::cout << "resize_seconds " << std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()
            << "\n";
  write_npy(get(f, "out"), out);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc < 2) throw std::runtime_error("usage: dinv_diffusion_tool sampler|resize --key value ...");
    const std::string command = argv[1];
    const auto flags = parse_flags(argc, argv);
    if (command == "sampler") return run_sampler(flags);
    if (command == "resize") return run_resize(flags);
    if (command == "schedule") return run_schedule(flags);
    throw std::runtime_error("unknown command " + command);
  } catch (const dinv::Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return static_cast<int>(e.exit_code());
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
