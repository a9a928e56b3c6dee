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

#include "dinv/cli/command.h"
#include "dinv/cli/model_text.h"
#include "dinv/core/error.h"
#include "dinv/core/log.h"
#include "dinv/dist/world.h"
#include "dinv/io/safetensors.h"
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
      "                      [--png DIR]  (see src/cli/model_sample.cpp for all options)\n";
  u += "       dinv model tokenize DIR TEXT... (DIR: a model folder or its tokenizer/)\n";
  u += "\nrun components (inputs -> outputs, by tensor name):\n"
       "  unet        sample [B,C,h,w], timestep [B] or [], encoder_hidden_states [B,T,D] -> sample\n"
       "  vae-encode  sample [B,3,H,W] in [-1,1] -> mean, std (and latents, a posterior sample, with --seed)\n"
       "  vae-decode  latents (or sample) [B,C,h,w], unscaled -> sample\n"
       "  text-encoder\n";
  return u;
}

struct Args {
  std::vector<std::string> positional;
  std::map<std::string, std::string> options;
  std::set<std::string> flags;
};

Args parse(const std::vector<std::string>& args, const std::set<std::string>& with_value,
           const std::set<std::string>& flags, const std::string& sub) {
  Args a;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& s = args[i];
    if (s.rfind("--", 0) != 0) {
      a.positional.push_back(s);
      continue;
    }
    std::string key = s.substr(2), value;
    const auto eq = key.find('=');
    const bool inline_value = eq != std::string::npos;
    if (inline_value) value = key.substr(eq + 1), key = key.substr(0, eq);
    if (flags.count(key) && !inline_value) {
      a.flags.insert(key);
      continue;
    }
    if (!with_value.count(key)) throw ConfigError(sub + ": unknown option '--" + key + "'\n" + usage());
    if (!inline_value) {
      if (i + 1 >= args.size()) throw ConfigError(sub + ": option --" + key + " needs a value");
      value = args[++i];
    }
    a.options[key] = value;
  }
  return a;
}

std::int64_t to_int(const std::string& key, const std::string& v) {
  try {
    size_t pos = 0;
    long long x = std::stoll(v, &pos);
    if (pos != v.size()) throw std::invalid_argument(v);
    return x;
  } catch (const std::exception&) {
    throw ConfigError("--" + key + " expects an integer, got '" + v + "'");
  }
}

at::ScalarType parse_dtype(const std::string& s) {
  if (s == "fp32" || s == "float32") return at::kFloat;
  if (s == "fp16" || s == "float16") return at::kHalf;
  if (s == "bf16" || s == "bfloat16") return at::kBFloat16;
  throw ConfigError("--dtype '" + s + "' is not one of fp32, fp16, bf16");
}

sd::LoadOptions load_options(const Args& a) {
  sd::LoadOptions o;
  if (a.options.count("dtype")) o.dtype = parse_dtype(a.options.at("dtype"));
  if (a.options.count("device")) {
    const std::string d = a.options.at("device");
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
  if (a.options.count("variant")) o.variant = a.options.at("variant");
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
  const Args a = parse(args, {"variant"}, {"json"}, "info");
  if (a.positional.size() != 1) throw ConfigError("info: expected one model folder\n" + usage());
  const std::string dir = a.positional[0];
  const sd::LoadOptions lo = [&] {
    sd::LoadOptions o;
    if (a.options.count("variant")) o.variant = a.options.at("variant");
    return o;
  }();
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
        count = sd::parameter_count(*m);
      } else {
        sd::AutoencoderKL m(sd::VaeConfig::from_file(files.config), meta);
        sd::check_weights(*m, files.weights, lo);
        describe = m->describe();
        count = sd::parameter_count(*m);
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
      } catch (const ModelError& e) {
        const std::string msg = e.what();
        if (msg.find("pickle") != std::string::npos) throw;
        c["fingerprint"] = sd::fingerprint_folder(cdir.string()).fingerprint;
      }
    } else {
      c["fingerprint"] = sd::fingerprint_folder(cdir.string()).fingerprint;
    }
    out["components"][name] = c;
  }
  out["parameters"] = total;
  out["fingerprint"] = sd::model_fingerprint(dir, lo.variant);
  if (a.flags.count("json")) {
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
  const Args a = parse(
      args, {"component", "inputs", "output", "dtype", "device", "variant", "threads", "slice", "seed"}, {}, "run");
  if (a.positional.size() != 1) throw ConfigError("run: expected one model folder\n" + usage());
  for (const char* k : {"component", "inputs", "output"})
    if (!a.options.count(k)) throw ConfigError(std::string("--") + k + " is required\n" + usage());
  const std::string dir = a.positional[0];
  const std::string component = a.options.at("component");
  const std::string in_path = a.options.at("inputs"), out_path = a.options.at("output");
  if (a.options.count("threads")) {
    const auto t = to_int("threads", a.options.at("threads"));
    if (t < 1) throw ConfigError("--threads must be at least 1");
    at::set_num_threads(static_cast<int>(t));
  }
  const std::int64_t slice = a.options.count("slice") ? to_int("slice", a.options.at("slice")) : 0;
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
    if (a.options.count("seed")) {
      at::Generator g =
          at::make_generator<at::CPUGeneratorImpl>(static_cast<std::uint64_t>(to_int("seed", a.options.at("seed"))));
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
  const Args a = parse(args, {"preset", "seed"}, {"configs-only"}, "init");
  if (a.positional.size() != 1) throw ConfigError("init: expected one output folder\n" + usage());
  if (!a.options.count("preset")) throw ConfigError("--preset is required\n" + usage());
  const std::uint64_t seed =
      a.options.count("seed") ? static_cast<std::uint64_t>(to_int("seed", a.options.at("seed"))) : 0;
  const std::string out = a.positional[0];
  const auto report = sd::init_model_folder(out, a.options.at("preset"), seed, !a.flags.count("configs-only"));
  std::string list;
  for (const auto& c : report.written) list += (list.empty() ? "" : ", ") + c;
  std::cout << "dinv model init: wrote " << out << " (preset " << a.options.at("preset") << ", seed " << seed
            << "): " << list << "\n";
  if (a.flags.count("configs-only")) std::cout << "dinv model init: configs only, no weights written\n";
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
  for (const auto& r : rest)
    if (r == "--help" || r == "-h") {
      std::cout << usage();
      return 0;
    }
  if (sub == "info") return model_info(rest);
  if (sub == "run") return model_run(rest);
  if (sub == "init") return model_init(rest);
  if (sub == "sample") return model_sample(rest);
  if (sub == "tokenize") return model_tokenize(rest);
  throw ConfigError("unknown subcommand '" + sub + "'\n" + usage());
}

}  // namespace dinv::cli
