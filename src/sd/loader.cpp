#include "dinv/sd/loader.h"

#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <iomanip>
#include <filesystem>
#include <set>
#include <sstream>
#include <unordered_map>

#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>

#include "config_reader.h"
#include "dinv/core/error.h"
#include "dinv/core/log.h"
#include "dinv/core/util.h"
#include "dinv/io/files.h"
#include "dinv/io/hash.h"
#include "dinv/io/safetensors.h"
#include "dinv/sd/errors.h"

namespace fs = std::filesystem;

namespace dinv::sd {

namespace {

std::string join(const fs::path& a, const std::string& b) { return (a / b).string(); }

std::string dtype_str(at::ScalarType t) { return c10::toString(t); }

std::vector<std::string> list_files(const fs::path& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.is_regular_file()) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

// Shard files named by a *.safetensors.index.json, in name order.
std::vector<std::string> shards_of(const fs::path& index_path) {
  const std::string where = index_path.string();
  io::Json j = detail::read_model_json(where);
  if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
    throw ModelError(where + ": a sharded-weights index needs a 'weight_map' object");
  std::set<std::string> files;
  for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
    if (!it.value().is_string()) throw ModelError(where + ": weight_map entry '" + it.key() + "' is not a file name");
    const std::string f = it.value().get<std::string>();
    if (f.empty() || f.find('/') != std::string::npos || f == "." || f == "..")
      throw ModelError(where + ": weight_map names '" + f + "', which is not a file in the same folder");
    if (!ends_with(f, ".safetensors"))
      throw ModelError(where + ": weight_map names '" + f + "', which is not a safetensors file");
    files.insert(f);
  }
  std::vector<std::string> out;
  for (const auto& f : files) {
    const auto p = index_path.parent_path() / f;
    if (!fs::is_regular_file(p)) throw ModelError(where + ": shard " + p.string() + " does not exist");
    out.push_back(p.string());
  }
  if (out.empty()) throw ModelError(where + ": weight_map is empty");
  return out;
}

// Ask for transparent huge pages on a large CPU tensor about to be filled:
// fewer page faults while reading (the kernel's "madvise" THP mode).
void advise_huge_pages(const at::Tensor& t) {
  constexpr std::uintptr_t kHuge = std::uintptr_t(2) << 20;
  const auto begin = reinterpret_cast<std::uintptr_t>(t.data_ptr());
  const auto end = begin + t.nbytes();
  const std::uintptr_t a = (begin + kHuge - 1) / kHuge * kHuge, b = end / kHuge * kHuge;
  if (b > a) madvise(reinterpret_cast<void*>(a), b - a, MADV_HUGEPAGE);
}

}  // namespace

ModelIndex read_model_index(const std::string& dir) {
  const std::string path = join(dir, "model_index.json");
  if (!fs::is_regular_file(path))
    throw ModelError(path + " not found: " + dir +
                     " is not a diffusers model folder (model_index.json, unet/, vae/, ...)");
  ModelIndex mi;
  mi.json = detail::read_model_json(path);
  if (!mi.json.is_object()) throw ModelError(path + ": expected a JSON object");
  mi.class_name = mi.json.value("_class_name", "");
  for (auto it = mi.json.begin(); it != mi.json.end(); ++it) {
    if (it.key().empty() || it.key()[0] == '_') continue;
    const auto& v = it.value();
    if (!v.is_array()) continue;  // plain options such as requires_safety_checker
    if (v.size() != 2)
      throw ModelError(path + ": key '" + it.key() + "' value " + v.dump() + " is not a [library, class] pair");
    if (v[0].is_null() && v[1].is_null()) continue;
    if (!v[0].is_string() || !v[1].is_string())
      throw ModelError(path + ": key '" + it.key() + "' value " + v.dump() + " is not a [library, class] pair");
    mi.components[it.key()] = {v[0].get<std::string>(), v[1].get<std::string>()};
  }
  return mi;
}

ComponentFiles find_component(const std::string& dir, const std::string& component, const std::string& variant,
                              const std::vector<std::string>& basenames) {
  ComponentFiles cf;
  cf.name = component;
  const fs::path cdir = fs::path(dir) / component;
  cf.dir = cdir.string();
  if (!fs::is_directory(cdir)) throw ModelError(cf.dir + ": component folder not found");
  cf.config = (cdir / "config.json").string();
  if (!fs::is_regular_file(cf.config)) throw ModelError(cf.config + " not found");
  const auto files = list_files(cdir);
  auto has = [&](const std::string& f) { return std::find(files.begin(), files.end(), f) != files.end(); };

  auto try_variant = [&](const std::string& v) -> bool {
    for (const auto& b : basenames) {
      const std::string single = v.empty() ? b + ".safetensors" : b + "." + v + ".safetensors";
      const std::string index = v.empty() ? b + ".safetensors.index.json" : b + ".safetensors.index." + v + ".json";
      if (has(single)) {
        cf.weights = {(cdir / single).string()};
        cf.variant = v;
        return true;
      }
      if (has(index)) {
        cf.index = (cdir / index).string();
        cf.weights = shards_of(cdir / index);
        cf.variant = v;
        return true;
      }
    }
    return false;
  };
  if (try_variant(variant)) return cf;

  const std::string plain = basenames.empty() ? "model.safetensors" : basenames[0] + ".safetensors";
  if (!variant.empty()) {
    throw ModelError(cf.dir + ": no weights for variant '" + variant + "' (expected " + basenames[0] + "." + variant +
                     ".safetensors or " + basenames[0] + ".safetensors.index." + variant + ".json)" +
                     (has(plain) ? "; " + plain + " is there: leave out the variant to use it" : ""));
  }
  // Without a variant: the only variant present, if there is exactly one.
  std::set<std::string> variants;
  for (const auto& f : files)
    for (const auto& b : basenames) {
      if (f.rfind(b + ".", 0) == 0 && ends_with(f, ".safetensors")) {
        std::string mid = f.substr(b.size() + 1, f.size() - b.size() - 1 - std::string(".safetensors").size());
        if (!mid.empty() && mid.find('.') == std::string::npos && mid.find('-') == std::string::npos)
          variants.insert(mid);
      }
      const std::string ip = b + ".safetensors.index.";
      if (f.rfind(ip, 0) == 0 && ends_with(f, ".json") && f.size() > ip.size() + 5)
        variants.insert(f.substr(ip.size(), f.size() - ip.size() - 5));
    }
  if (variants.size() == 1 && try_variant(*variants.begin())) {
    log::info(cf.dir + ": using the '" + cf.variant + "' weights (the only ones present)");
    return cf;
  }
  if (variants.size() > 1) {
    std::string list;
    for (const auto& v : variants) list += (list.empty() ? "" : ", ") + v;
    throw ModelError(cf.dir + ": no " + plain + " but several variants (" + list + "): choose one with --variant");
  }
  // Pickles are never loaded.
  for (const auto& f : files)
    for (const char* ext : {".bin", ".ckpt", ".pt", ".pth"})
      if (ends_with(f, ext)) {
        const std::string stem = f.substr(0, f.size() - std::string(ext).size());
        const std::string st = stem + ".safetensors";
        throw PickleCheckpointError(
            (cdir / f).string() + " is a pickle checkpoint; dinv never unpickles files (loading a pickle can execute " +
            "arbitrary code). Use the safetensors weights instead: " + (cdir / st).string() +
            " (published next to the .bin for Stable Diffusion models), or convert once in Python with diffusers: " +
            "Model.from_pretrained(\"" + dir + "\", subfolder=\"" + component + "\").save_pretrained(\"" + cf.dir +
            "\", safe_serialization=True)");
      }
  throw ModelError(cf.dir + ": no weights found (expected " + plain + " or a sharded " + basenames[0] +
                   ".safetensors.index.json)");
}

namespace {
// Open the files and check every tensor against the module (names, shapes,
// dtypes) without reading any data; ModelError listing every problem.
std::vector<io::SafetensorsFile> plan_load(torch::nn::Module& module, const std::vector<std::string>& files,
                                           const LoadOptions& options,
                                           std::unordered_map<std::string, at::Tensor>& targets) {
  for (const auto& p : module.named_parameters(true)) targets.emplace(p.key(), p.value());
  for (const auto& b : module.named_buffers(true)) targets.emplace(b.key(), b.value());

  std::vector<io::SafetensorsFile> opened;
  for (const auto& f : files) {
    try {
      opened.emplace_back(f);
    } catch (const IoError& e) {
      throw ModelError(e.what());
    }
  }
  std::vector<std::string> problems;
  std::unordered_map<std::string, std::string> source;  // tensor -> file
  for (const auto& f : opened) {
    for (const auto& ti : f.tensors()) {
      const std::string where = f.path() + ": tensor '" + ti.name + "'";
      auto it = targets.find(ti.name);
      if (it == targets.end()) {
        problems.push_back(where + " (" + dtype_str(ti.dtype) + " " + shape_str(ti.shape) +
                           ") is unexpected: the model has no parameter of that name");
        continue;
      }
      auto [prev, fresh] = source.emplace(ti.name, f.path());
      if (!fresh) {
        problems.push_back(where + " also appears in " + prev->second);
        continue;
      }
      const at::Tensor& t = it->second;
      if (t.sizes() != at::IntArrayRef(ti.shape))
        problems.push_back(where + ": expected shape " + shape_str(t.sizes().vec()) + ", found " + shape_str(ti.shape));
      const bool float_target = at::isFloatingType(t.scalar_type());
      const bool float_file = at::isFloatingType(ti.dtype);
      if (ti.dtype != t.scalar_type() && (options.strict_dtype || float_target != float_file))
        problems.push_back(where + ": expected dtype " + dtype_str(t.scalar_type()) + ", found " + dtype_str(ti.dtype));
    }
  }
  std::vector<std::string> missing;
  for (const auto& [name, t] : targets)
    if (!source.count(name))
      missing.push_back("missing tensor '" + name + "' (expected " + dtype_str(t.scalar_type()) + " " +
                        shape_str(t.sizes().vec()) + ")");
  std::sort(missing.begin(), missing.end());
  problems.insert(problems.end(), missing.begin(), missing.end());
  if (!problems.empty()) {
    std::string list;
    for (const auto& f : files) list += (list.empty() ? "" : ", ") + f;
    std::ostringstream msg;
    msg << "the weights in " << list << " do not match the model built from its config (" << problems.size()
        << " problem" << (problems.size() > 1 ? "s" : "") << "):";
    const size_t show = std::min<size_t>(problems.size(), 20);
    for (size_t i = 0; i < show; ++i) msg << "\n  " << problems[i];
    if (problems.size() > show) msg << "\n  ... and " << problems.size() - show << " more";
    throw ModelError(msg.str());
  }

  return opened;
}
}  // namespace

void check_weights(torch::nn::Module& module, const std::vector<std::string>& files, const LoadOptions& options) {
  std::unordered_map<std::string, at::Tensor> targets;
  plan_load(module, files, options, targets);
}

LoadStats load_weights(torch::nn::Module& module, const std::vector<std::string>& files, const LoadOptions& options) {
  std::unordered_map<std::string, at::Tensor> targets;
  auto opened = plan_load(module, files, options, targets);
  LoadStats stats;
  at::NoGradGuard no_grad;
  struct Job {
    const io::SafetensorsFile* file;
    const io::TensorInfo* info;
    at::Tensor* target;
  };
  std::vector<Job> jobs;
  for (const auto& f : opened)
    for (const auto& ti : f.tensors()) {
      jobs.push_back({&f, &ti, &targets.at(ti.name)});
      ++stats.tensors;
      stats.bytes += ti.end - ti.begin;
    }
  // Largest first, spread over the intra-op threads: reading is page faults
  // and copies in the kernel, which parallelise.
  std::sort(jobs.begin(), jobs.end(),
            [](const Job& a, const Job& b) { return a.info->end - a.info->begin > b.info->end - b.info->begin; });
  const auto t0 = std::chrono::steady_clock::now();
  auto read_one = [](const Job& j) {
    at::Tensor& t = *j.target;
    if (j.info->dtype == t.scalar_type()) {
      if (t.device().is_cpu() && t.is_contiguous()) advise_huge_pages(t);
      j.file->read_into(j.info->name, t);
    } else {
      // Conversion (an fp16 file into an fp32 model): one tensor at a time.
      at::Tensor tmp = at::empty(j.info->shape, at::TensorOptions().dtype(j.info->dtype));
      j.file->read_into(j.info->name, tmp);
      t.copy_(tmp);
    }
  };
  const bool all_cpu = std::all_of(jobs.begin(), jobs.end(), [](const Job& j) { return j.target->device().is_cpu(); });
  if (all_cpu) {
    at::parallel_for(0, static_cast<std::int64_t>(jobs.size()), 1, [&](std::int64_t b, std::int64_t e) {
      at::NoGradGuard ng;
      for (std::int64_t i = b; i < e; ++i) read_one(jobs[i]);
    });
  } else {
    for (const auto& j : jobs) read_one(j);
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::ostringstream msg;
  msg << "read " << stats.tensors << " tensors (" << std::fixed << std::setprecision(2) << stats.bytes / 1e9
      << " GB) from " << files.size() << " file" << (files.size() > 1 ? "s" : "") << " in " << secs << " s";
  log::debug(msg.str());
  return stats;
}

namespace {
// The UNet and the VAE load the same way: config, module, weights, frozen in
// eval mode (optionally channels-last).
template <typename Model, typename Config>
Model load_frozen(const std::string& dir, const LoadOptions& options, const std::string& component) {
  const auto files = find_component(dir, component, options.variant);
  const Config config = Config::from_file(files.config);
  {
    // Match the weights against the module built on the meta device (no
    // memory) first: a config declaring sizes that its files do not hold is
    // refused, naming the file and tensor, before anything is allocated.
    Model meta(config, at::TensorOptions().dtype(options.dtype).device(at::kMeta));
    check_weights(*meta, files.weights, options);
  }
  Model m(config, at::TensorOptions().dtype(options.dtype).device(options.device));
  load_weights(*m, files.weights, options);
  if (options.channels_last) m->set_channels_last(true);
  freeze(*m);
  m->eval();
  return m;
}
}  // namespace

UNet2DConditionModel load_unet(const std::string& dir, const LoadOptions& options, const std::string& component) {
  return load_frozen<UNet2DConditionModel, UNetConfig>(dir, options, component);
}

AutoencoderKL load_vae(const std::string& dir, const LoadOptions& options, const std::string& component) {
  return load_frozen<AutoencoderKL, VaeConfig>(dir, options, component);
}

// ---- fingerprints ---------------------------------------------------------------------

ComponentFingerprint fingerprint_component(const ComponentFiles& files) {
  ComponentFingerprint fp;
  // diffusers bookkeeping (_diffusers_version, _name_or_path, ...) is left out:
  // it changes when a folder is re-saved, the model does not.
  io::Json config = detail::read_model_json(files.config);
  if (config.is_object())
    for (auto it = config.begin(); it != config.end();)
      it = (!it.key().empty() && it.key()[0] == '_' && it.key() != "_class_name") ? config.erase(it) : std::next(it);
  fp.config_sha256 = io::sha256_hex(io::canonical_json(config));
  std::vector<io::SafetensorsFile> opened;
  for (const auto& f : files.weights) {
    try {
      opened.emplace_back(f);
    } catch (const IoError& e) {
      throw ModelError(e.what());
    }
  }
  std::map<std::string, std::pair<const io::SafetensorsFile*, const io::TensorInfo*>> byname;
  for (const auto& f : opened)
    for (const auto& ti : f.tensors()) byname[ti.name] = {&f, &ti};
  io::Sha256 w;
  w.update(std::string("dinv-wh1", 8));
  for (const auto& [name, ref] : byname) {
    const auto& ti = *ref.second;
    std::string head = name + '\0' + dtype_str(ti.dtype) + '\0' + shape_str(ti.shape) + '\0';
    w.update(head);
    at::Tensor view = ref.first->tensor(name);
    io::weight_hash_update(w, view.data_ptr(), ti.end - ti.begin);
  }
  fp.weights_sha256 = w.hex_digest();
  fp.fingerprint = io::sha256_hex("dinv-component-v1\n" + fp.config_sha256 + "\n" + fp.weights_sha256);
  return fp;
}

ComponentFingerprint fingerprint_folder(const std::string& component_dir) {
  io::Sha256 s;
  s.update(std::string("dinv-folder-v1\n"));
  for (const auto& f : list_files(component_dir)) {
    const std::string path = join(component_dir, f);
    std::string content;
    if (ends_with(f, ".json")) {
      content = io::canonical_json(detail::read_model_json(path));
    } else {
      content = io::read_text_file(path);
    }
    s.update(f + '\0' + io::sha256_hex(content) + '\n');
  }
  ComponentFingerprint fp;
  fp.config_sha256 = s.hex_digest();
  fp.fingerprint = io::sha256_hex("dinv-component-v1\n" + fp.config_sha256 + "\n");
  return fp;
}

std::string model_fingerprint(const std::string& dir, const std::string& variant) {
  const ModelIndex mi = read_model_index(dir);
  io::Sha256 s;
  s.update(std::string("dinv-model-v1\n"));
  for (const auto& [name, cls] : mi.components) {
    const fs::path cdir = fs::path(dir) / name;
    if (!fs::is_directory(cdir))
      throw ModelError(join(dir, "model_index.json") + " lists component '" + name + "' but " + cdir.string() +
                       " does not exist");
    bool has_weights = false;
    for (const auto& f : list_files(cdir))
      if (ends_with(f, ".safetensors") ||
          (f.find(".safetensors.index") != std::string::npos && ends_with(f, ".json")) || ends_with(f, ".bin") ||
          ends_with(f, ".ckpt") || ends_with(f, ".pt") || ends_with(f, ".pth"))
        has_weights = true;
    const auto fp =
        has_weights ? fingerprint_component(find_component(dir, name, variant)) : fingerprint_folder(cdir.string());
    s.update(name + '\0' + fp.fingerprint + '\n');
  }
  return "sha256:" + s.hex_digest();
}

}  // namespace dinv::sd
