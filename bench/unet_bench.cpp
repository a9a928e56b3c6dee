// Benchmarks of the Stable Diffusion models (driven by bench/unet_bench.py).
//   dinv_bench_sd unet DIR --latent S --batch B --runs N [--threads T] [--tokens 77] [--channels-last]
//       UNet forward (inference mode) on random inputs; prints one line per run: "run WALL_SECONDS CPU_SECONDS".
//   dinv_bench_sd load DIR [--component unet|vae]
//       load a component and print the peak resident set size against the weight bytes.
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "dinv/core/error.h"
#include "dinv/core/memory.h"
#include "dinv/sd/loader.h"

namespace {

std::string arg(int argc, char** argv, const std::string& key, const std::string& fallback) {
  for (int i = 1; i + 1 < argc; ++i)
    if (argv[i] == "--" + key) return argv[i + 1];
  return fallback;
}
bool flag(int argc, char** argv, const std::string& key) {
  for (int i = 1; i < argc; ++i)
    if (argv[i] == "--" + key) return true;
  return false;
}

double cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + 1e-6 * (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

long peak_rss_kb() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

}  // namespace

int main(int argc, char** argv) {
  dinv::core::configure_malloc();  // as the dinv program does
  try {
    if (argc < 3) {
      std::cerr << "usage: dinv_bench_sd unet DIR --latent S --batch B --runs N [--threads T] | load DIR\n";
      return 2;
    }
    const std::string cmd = argv[1], dir = argv[2];
    const int threads = std::stoi(arg(argc, argv, "threads", "0"));
    if (threads > 0) at::set_num_threads(threads);
    if (cmd == "load") {
      const long before = peak_rss_kb();
      const auto t0 = std::chrono::steady_clock::now();
      const std::string comp = arg(argc, argv, "component", "unet");
      auto files = dinv::sd::find_component(dir, comp);
      std::uint64_t bytes = 0;
      std::int64_t params = 0;
      if (comp == "unet") {
        auto m = dinv::sd::load_unet(dir);
        for (const auto& p : m->parameters()) bytes += p.nbytes(), params += p.numel();
      } else {
        auto m = dinv::sd::load_vae(dir);
        for (const auto& p : m->parameters()) bytes += p.nbytes(), params += p.numel();
      }
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const long after = peak_rss_kb();
      std::printf(
          "component %s\nparameters %lld\nweight_bytes %llu\npeak_rss_before_bytes %lld\npeak_rss_bytes %lld\n"
          "ratio %.3f\nload_seconds %.2f\n",
          comp.c_str(), static_cast<long long>(params), static_cast<unsigned long long>(bytes),
          static_cast<long long>(before) * 1024, static_cast<long long>(after) * 1024,
          static_cast<double>(after) * 1024 / static_cast<double>(bytes), secs);
      return 0;
    }
    if (cmd == "unet") {
      const std::int64_t S = std::stoll(arg(argc, argv, "latent", "16")), B = std::stoll(arg(argc, argv, "batch", "2"));
      const std::int64_t T = std::stoll(arg(argc, argv, "tokens", "77"));
      const int runs = std::stoi(arg(argc, argv, "runs", "5"));
      dinv::sd::LoadOptions lo;
      lo.channels_last = flag(argc, argv, "channels-last");
      auto unet = dinv::sd::load_unet(dir, lo);
      at::InferenceMode im;
      auto x = at::randn({B, 4, S, S});
      auto t = at::full({B}, 500, at::kLong);
      auto c = at::randn({B, T, unet->config().cross_attention_dim[0]});
      std::printf("threads %d\n", at::get_num_threads());
      unet->forward(x, t, c);  // warm-up
      for (int i = 0; i < runs; ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        const double c0 = cpu_seconds();
        auto y = unet->forward(x, t, c);
        const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::printf("run %.4f %.4f\n", secs, cpu_seconds() - c0);
        std::fflush(stdout);
      }
      return 0;
    }
    std::cerr << "unknown command " << cmd << "\n";
    return 2;
  } catch (const dinv::Error& e) {
    std::cerr << e.what() << "\n";
    return 1;
  }
}
