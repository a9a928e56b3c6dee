// `dinv model`: inspect, run and create Stable Diffusion model folders.
//   dinv model info DIR [--variant V] [--json]
//   dinv model run DIR --component unet|vae-encode|vae-decode|... --inputs IN --output OUT
//                  [--dtype fp32|fp16|bf16] [--device cpu|cuda|cuda:N] [--variant V]
//                  [--threads N] [--slice N] [--seed S]
//   dinv model init --preset tiny|sd15|sd21 [--seed S] OUT
//   dinv model tokenize DIR TEXT...
// The text components' parts (tokenize, the text encoder) are in model_text.cpp.
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <set>
#include <sstream>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>

#include "dinv/cli/arguments.h"
#include "dinv/cli/command.h"
#include "dinv/cli/model_text.h"
#include "dinv/core/error.h"
#include "dinv/core/log.h"
#include "dinv/core/util.h"
#include "dinv/dist/world.h"
#include "dinv/io/safetensors.h"
#include "dinv/sd/errors.h"
#include "dinv/sd/loader.h"
#include "dinv/sd/presets.h"

namespace fs = std::filesystem;

namespace dinv::cli {

namespace {

std::string usage() {
  std::string u =
      "usage: dinv model info DIR [--variant V] [--json]\n"
      "       dinv model run DIR --component COMPONENT --inputs IN.safetensors --output OUT.safetensors\n"
      "                      [--dtype fp32|fp16|bf16] [--device cpu|cuda|cuda:N] [--variant V]\n"
      "                      [--threads N] [--slice N] [--seed S]\n"
      "       dinv model init --preset tiny|sd15|sd21 [--seed S] [--configs-only] OUT\n"
      "       dinv model sample DIR --cond C.safetensors [--uncond U.safetensors] [--sampler S] [--steps N]\n"
      "                      [--guidance W] [--seed S] [--eta E] [--latents L.safetensors] --output OUT.safetensors\n"
      "                      [--png DIR] [...]\n"
      "       dinv model tokenize DIR TEXT... (DIR: a model folder or its tokenizer/)\n"
      "       dinv model SUBCOMMAND --help lists every option of a subcommand\n";
  u += "\nrun components (inputs -> outputs, by tensor name):\n"
       "  unet        sample [B,C,h,w], timestep [B] or [], encoder_hidden_states [B,T,D] -> sample\n"
       "  vae-encode  sample [B,3,H,W] in [-1,1] -> mean, std (and latents, a posterior sample, with --seed)\n"
       "  vae-decode  latents (or sample) [B,C,h,w], unscaled -> sample\n"
       "  text-encoder\n";
  return u;
}

// The options of each subcommand (their --help).
Arguments info_arguments() {
  Arguments a("dinv model info",
              "usage: dinv model info DIR [--variant V] [--json]\n\n"
              "Describe a model folder: each component's class, architecture, parameters, weight files "
              "and fingerprint.");
  a.positional("DIR", "the model folder (model_index.json and one folder per component)")
      .value("variant", "V", "weight variant: read diffusion_pytorch_model.V.safetensors (e.g. fp16)")
      .flag("json", "print JSON instead of text");
  return a;
}

Arguments run_arguments() {
  Arguments a("dinv model run",
              "usage: dinv model run DIR --component COMPONENT --inputs IN.safetensors --output OUT.safetensors "
              "[options]\n\nRun one component of a model folder on named input tensors.");
  a.positional("DIR", "the model folder")
      .value("component", "COMPONENT", "unet, vae-encode, vae-decode or a text component (dinv model --help)")
      .value("inputs", "IN", "safetensors file of the input tensors, by name")
      .value("output", "OUT", "safetensors file written with the output tensors")
      .value("dtype", "T", "fp32 (default), fp16 or bf16")
      .value("device", "D", "cpu (default), cuda or cuda:N")
      .value("variant", "V", "weight variant: read diffusion_pytorch_model.V.safetensors")
      .value("threads", "N", "CPU threads (at least 1; default: LibTorch's)")
      .value("slice", "N", "VAE: encode or decode N images at a time (0, the default: all at once)")
      .value("seed", "S", "vae-encode: also write 'latents', a posterior sample drawn with seed S");
  return a;
}

Arguments init_arguments() {
  Arguments a("dinv model init",
              "usage: dinv model init --preset tiny|sd15|sd21 [--seed S] [--configs-only] OUT\n\n"
              "Write a model folder with a preset architecture and random weights.");
  a.positional("OUT", "the folder to write")
      .value("preset", "NAME", "architecture: tiny, sd15 or sd21")
      .value("seed", "S", "seed of the random weights (default 0)")
      .flag("configs-only", "write the configuration files only, no weights");
  return a;
}

at::ScalarType parse_dtype(const std::string& s) {
  if (s == "fp32" || s == "float32") return at::kFloat;
  if (s == "fp16" || s == "float16") return at::kHalf;
  if (s == "bf16" || s == "bfloat16") return at::kBFloat16;
  throw ConfigError("--dtype '" + s + "' is not one of fp32, fp16, bf16");
}

sd::LoadOptions load_options(const Arguments& a) {
  sd::LoadOptions o;
  if (a.has("dtype")) o.dtype = parse_dtype(a.get("dtype"));
  if (a.has("device")) {
    const std::string d = a.get("device");
    try {
      o.device = at::Device(d);
    } catch (const std::exception&) {
      throw ConfigError("--device '" + d + "' is not a device (cpu, cuda, cuda:N)");
    }
    if (o.device.is_cuda() && !at::hasCUDA())
      throw ConfigError("--device " + d + " but this machine (or build) has no CUDA");
  }
  if (o.device.is_cpu() && o.dtype != at::kFloat)
    log::warn("dinv model: " + std::string(c10::toString(o.dtype)) + " on the CPU is slow; fp32 is the CPU precision");
  o.variant = a.get("variant", o.variant);
  return o;
}

std::string human_bytes(double b) {
  const char* units[] = {"B", "KB", "MB", "GB", "TB"};
  int u = 0;
  while (b >= 1000 && u < 4) b /= 1000, ++u;
  std::ostringstream s;
  s << std::fixed << std::setprecision(u ? 2 : 0) << b << " " << units[u];
  return s.str();
}

std::string grouped(std::int64_t n) {
  std::string s = std::to_string(n), out;
  int c = 0;
  for (auto it = s.rbegin(); it != s.rend(); ++it) {
    if (c && c % 3 == 0) out.insert(out.begin(), ',');
    out.insert(out.begin(), *it);
    ++c;
  }
  return out;
}

// Weight statistics from the safetensors headers (no data read).
struct WeightSummary {
  std::int64_t params = 0;
  std::uint64_t bytes = 0;
  std::set<std::string> dtypes;
};
WeightSummary summarize(const std::vector<std::string>& files) {
  WeightSummary s;
  for (const auto& f : files) {
    io::SafetensorsFile st(f);
    for (const auto& t : st.tensors()) {
      std::int64_t n = 1;
      for (auto d : t.shape) n *= d;
      s.params += n;
      s.bytes += t.end - t.begin;
      s.dtypes.insert(c10::toString(t.dtype));
    }
  }
  return s;
}

int model_info(const std::vector<std::string>& args) {
  Arguments a = info_arguments();
  if (!a.parse_or_print_help(args)) return 0;
  const std::string dir = a.one_positional("model folder");
  sd::LoadOptions lo;
  lo.variant = a.get("variant", lo.variant);
  const sd::ModelIndex mi = sd::read_model_index(dir);
  io::Json out = {{"path", dir}, {"pipeline", mi.class_name}, {"components", io::Json::object()}};
  const auto meta = at::TensorOptions().dtype(at::kFloat).device(at::kMeta);
  std::int64_t total = 0;
  for (const auto& [name, lib_cls] : mi.components) {
    io::Json c = {{"library", lib_cls.first}, {"class", lib_cls.second}};
    const fs::path cdir = fs::path(dir) / name;
    if (!fs::is_directory(cdir))
      throw ModelError(dir + "/model_index.json lists '" + name + "' but " + cdir.string() + " does not exist");
    if (lib_cls.second == "UNet2DConditionModel" || lib_cls.second == "AutoencoderKL") {
      const auto files = sd::find_component(dir, name, lo.variant);
      std::string describe;
      std::int64_t count;
      if (lib_cls.second == "UNet2DConditionModel") {
        sd::UNet2DConditionModel m(sd::UNetConfig::from_file(files.config), meta);
        sd::check_weights(*m, files.weights, lo);
        describe = m->describe();
        count = dinv::parameter_count(*m);
      } else {
        sd::AutoencoderKL m(sd::VaeConfig::from_file(files.config), meta);
        sd::check_weights(*m, files.weights, lo);
        describe = m->describe();
        count = dinv::parameter_count(*m);
      }
      const auto ws = summarize(files.weights);
      const auto fp = sd::fingerprint_component(files);
      c["architecture"] = describe;
      c["parameters"] = count;
      c["dtype"] = std::vector<std::string>(ws.dtypes.begin(), ws.dtypes.end());
      c["weight_bytes"] = ws.bytes;
      c["files"] = files.weights;
      c["variant"] = files.variant;
      c["fingerprint"] = fp.fingerprint;
      total += count;
    } else if (auto text = describe_text_component(dir, name)) {
      c["architecture"] = *text;
      c["fingerprint"] = sd::fingerprint_folder(cdir.string()).fingerprint;
    } else if (fs::is_regular_file(cdir / "config.json") || fs::is_regular_file(cdir / "scheduler_config.json")) {
      // Other components: what the folder holds.
      for (const char* cfg : {"config.json", "scheduler_config.json"})
        if (fs::is_regular_file(cdir / cfg)) c["config"] = (cdir / cfg).string();
      try {
        const auto files = sd::find_component(dir, name, lo.variant);
        const auto ws = summarize(files.weights);
        c["parameters"] = ws.params;
        c["dtype"] = std::vector<std::string>(ws.dtypes.begin(), ws.dtypes.end());
        c["weight_bytes"] = ws.bytes;
        c["files"] = files.weights;
        c["fingerprint"] = sd::fingerprint_component(files).fingerprint;
        total += ws.params;
      } catch (const sd::PickleCheckpointError&) {
        throw;
      } catch (const ModelError&) {
        c["fingerprint"] = sd::fingerprint_folder(cdir.string()).fingerprint;
      }
    } else {
      c["fingerprint"] = sd::fingerprint_folder(cdir.string()).fingerprint;
    }
    out["components"][name] = c;
  }
  out["parameters"] = total;
  out["fingerprint"] = sd::model_fingerprint(dir, lo.variant);
  if (a.is_set("json")) {
    std::cout << out.dump(2) << std::endl;
    return 0;
  }
  std::cout << "model:       " << dir << "\npipeline:    " << mi.class_name
            << "\nfingerprint: " << out["fingerprint"].get<std::string>() << "\nparameters:  " << grouped(total)
            << "\n";
  for (auto it = out["components"].begin(); it != out["components"].end(); ++it) {
    const auto& c = it.value();
    std::cout << "\n"
              << it.key() << ": " << c["class"].get<std::string>() << " (" << c["library"].get<std::string>() << ")\n";
    if (c.contains("architecture")) std::cout << "  " << c["architecture"].get<std::string>() << "\n";
    if (c.contains("parameters")) {
      std::string dt;
      for (const auto& d : c["dtype"]) dt += (dt.empty() ? "" : "/") + d.get<std::string>();
      std::cout << "  parameters: " << grouped(c["parameters"].get<std::int64_t>()) << " (" << dt << ", "
                << human_bytes(c["weight_bytes"].get<double>()) << " in " << c["files"].size() << " file"
                << (c["files"].size() > 1 ? "s" : "") << ")\n";
    }
    if (c.contains("config")) std::cout << "  config: " << c["config"].get<std::string>() << "\n";
    std::cout << "  fingerprint: " << c["fingerprint"].get<std::string>() << "\n";
  }
  return 0;
}

const at::Tensor& input(const std::map<std::string, at::Tensor>& in, const std::string& file,
                        std::initializer_list<const char*> names) {
  for (const char* n : names) {
    auto it = in.find(n);
    if (it != in.end()) return it->second;
  }
  std::string want, have;
  for (const char* n : names) want += (want.empty() ? "'" : " or '") + std::string(n) + "'";
  for (const auto& [k, v] : in) have += (have.empty() ? "" : ", ") + k;
  throw ConfigError("" + file + " has no tensor " + want + " (it has: " + (have.empty() ? "none" : have) + ")");
}

int model_run(const std::vector<std::string>& args) {
  Arguments a = run_arguments();
  if (!a.parse_or_print_help(args)) return 0;
  const std::string dir = a.one_positional("model folder");
  const std::string component = a.get("component");
  const std::string in_path = a.get("inputs"), out_path = a.get("output");
  if (a.has("threads")) at::set_num_threads(static_cast<int>(a.integer("threads", 1, 1)));
  const std::int64_t slice = a.integer("slice", 0);
  const sd::LoadOptions lo = load_options(a);
  std::map<std::string, at::Tensor> in;
  for (const auto& [k, v] : io::read_safetensors(in_path)) in[k] = v.to(lo.device);
  std::map<std::string, at::Tensor> out;

  at::InferenceMode guard;
  if (component == "unet") {
    auto unet = sd::load_unet(dir, lo);
    const at::Tensor& sample = input(in, in_path, {"sample"});
    const at::Tensor& timestep = input(in, in_path, {"timestep"});
    const at::Tensor& context = input(in, in_path, {"encoder_hidden_states"});
    out["sample"] = unet->forward(sample, timestep, context);
  } else if (component == "vae-encode") {
    auto vae = sd::load_vae(dir, lo);
    auto post = vae->encode(input(in, in_path, {"sample", "images"}), slice);
    out["mean"] = post.mean;
    out["std"] = post.std;
    if (a.has("seed")) {
      at::Generator g = at::make_generator<at::CPUGeneratorImpl>(static_cast<std::uint64_t>(a.integer("seed", 0)));
      out["latents"] = post.sample(g);
    }
  } else if (component == "vae-decode") {
    auto vae = sd::load_vae(dir, lo);
    out["sample"] = vae->decode(input(in, in_path, {"latents", "sample"}), slice);
  } else if (component == "text-encoder") {
    out = run_text_encoder(dir, in, lo);
  } else {
    throw ConfigError("unknown --component '" + component + "' (allowed: unet, vae-encode, vae-decode, text-encoder)");
  }
  for (auto& [k, v] : out) v = v.to(at::kCPU).contiguous();
  io::write_safetensors(out_path, out);
  return 0;
}

int model_init(const std::vector<std::string>& args) {
  Arguments a = init_arguments();
  if (!a.parse_or_print_help(args)) return 0;
  const std::string out = a.one_positional("output folder");
  const std::string preset = a.get("preset");
  const auto seed = static_cast<std::uint64_t>(a.integer("seed", 0));
  const bool configs_only = a.is_set("configs-only");
  const auto report = sd::init_model_folder(out, preset, seed, !configs_only);
  std::string list;
  for (const auto& c : report.written) list += (list.empty() ? "" : ", ") + c;
  std::cout << "dinv model init: wrote " << out << " (preset " << preset << ", seed " << seed << "): " << list << "\n";
  if (configs_only) std::cout << "dinv model init: configs only, no weights written\n";
  return 0;
}

}  // namespace

int model_sample(const std::vector<std::string>& args);  // model_sample.cpp

int run_model(dist::World& world, const std::vector<std::string>& args) {
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    if (world.is_root())
      std::cout << "dinv model: inspect, run and create Stable Diffusion model folders\n\n" << usage();
    return args.empty() ? 2 : 0;
  }
  // One process does the work; other ranks of an MPI launch have nothing to do.
  if (!world.is_root()) return 0;
  const std::string sub = args[0];
  const std::vector<std::string> rest(args.begin() + 1, args.end());
  if (sub == "info") return model_info(rest);
  if (sub == "run") return model_run(rest);
  if (sub == "init") return model_init(rest);
  if (sub == "sample") return model_sample(rest);
  for (const auto& r : rest)
    if (r == "--help" || r == "-h") {
      std::cout << usage();
      return 0;
    }
  if (sub == "tokenize") return model_tokenize(rest);
  throw ConfigError("unknown subcommand '" + sub + "'\n" + usage());
}

}  // namespace dinv::cli
