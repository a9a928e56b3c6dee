// `dinv data shapes|export|info`: make the procedural dataset (or its
// captioned corpus); export any dataset the [data] keys describe as .npy
// arrays (inspection, and the reader tests, which compare the decoded pixels
// with what Python wrote); describe a dataset, captioned folders included.
#include <ATen/ATen.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>

#include "dinv/cli/data_command.h"

#include "dinv/cli/command.h"
#include "dinv/core/error.h"
#include "dinv/core/log.h"
#include "dinv/data/captioned.h"
#include "dinv/data/readers.h"
#include "dinv/data/shapes.h"
#include "dinv/dist/world.h"

namespace fs = std::filesystem;

namespace dinv::cli {
namespace {

const char* kUsage =
    "usage: dinv data shapes --out DIR [--train N] [--test N] [--seed S] [--resolution R]\n"
    "       dinv data shapes --captioned --out DIR [--count N] [--seed S] [--resolution R]\n"
    "       dinv data export --out DIR [--config FILE] [--data.format=...] [--data.root=...] [--data.split=...]\n"
    "       dinv data info [--verify] [--config FILE] [--data.format=...] [--data.root=...] [--data.split=...]\n"
    "shapes: the procedural 10-class dataset (CIFAR-10 binary at 32 px, PNG folders otherwise)\n"
    "shapes --captioned: a captioned pretraining corpus of the same shapes and more (DIR/metadata.jsonl,\n"
    "        DIR/images/NNNNNN.png; --count default 20000, --resolution default 32)\n"
    "export: decode a dataset into DIR/images.npy (uint8 [N,H,W,3]), DIR/labels.npy (int64 [N]), DIR/info.txt\n"
    "info: open a dataset (any format, captioned included) and print what it is, its size and fingerprint;\n"
    "      --verify also decodes every image\n";

// "--key value" and "--key=value" options of the shapes subcommand.
std::map<std::string, std::string> parse_options(const std::vector<std::string>& args, std::size_t first) {
  std::map<std::string, std::string> options;
  for (std::size_t i = first; i < args.size(); ++i) {
    std::string key = args[i];
    if (key.rfind("--", 0) != 0) throw ConfigError("dinv data: unexpected argument '" + key + "'\n" + kUsage);
    key = key.substr(2);
    const auto eq = key.find('=');
    if (eq != std::string::npos) {
      options[key.substr(0, eq)] = key.substr(eq + 1);
    } else {
      if (i + 1 >= args.size()) throw ConfigError("dinv data: option --" + key + " needs a value");
      options[key] = args[++i];
    }
  }
  return options;
}

std::int64_t integer_option(const std::map<std::string, std::string>& o, const std::string& key,
                            std::int64_t fallback) {
  const auto it = o.find(key);
  if (it == o.end()) return fallback;
  try {
    std::size_t used = 0;
    const auto v = std::stoll(it->second, &used);
    if (used == it->second.size() && v >= 0) return v;
  } catch (const std::exception&) {
  }
  throw ConfigError("dinv data shapes: --" + key + "=" + it->second + " is not a non-negative integer");
}

int run_captioned_shapes(dist::World& world, const std::map<std::string, std::string>& o) {
  for (const auto& [key, value] : o)
    if (key != "out" && key != "count" && key != "seed" && key != "resolution")
      throw ConfigError("dinv data shapes --captioned: unknown option --" + key + "\n" + kUsage);
  if (!o.count("out")) throw ConfigError("dinv data shapes --captioned: --out DIR is required\n" + std::string(kUsage));
  data::CaptionedShapesOptions options;
  options.count = integer_option(o, "count", options.count);
  options.seed = static_cast<std::uint64_t>(integer_option(o, "seed", 0));
  options.resolution = integer_option(o, "resolution", options.resolution);
  if (world.is_root()) data::write_captioned_shapes(o.at("out"), options);
  log::info("captioned shapes corpus: " + std::to_string(options.count) + " images at " +
            std::to_string(options.resolution) + " px, seed " + std::to_string(options.seed) + " -> " + o.at("out"));
  return 0;
}

int run_shapes(dist::World& world, std::vector<std::string> args) {
  const auto flag = std::find(args.begin() + 1, args.end(), "--captioned");
  const bool captioned = flag != args.end();
  if (captioned) args.erase(flag);
  const auto o = parse_options(args, 1);
  if (captioned) return run_captioned_shapes(world, o);
  if (o.count("count"))
    throw ConfigError(
        "dinv data shapes: --count is an option of --captioned (the labelled set takes --train and --test)");
  for (const auto& [key, value] : o)
    if (key != "out" && key != "train" && key != "test" && key != "seed" && key != "resolution")
      throw ConfigError("dinv data shapes: unknown option --" + key + "\n" + kUsage);
  if (!o.count("out")) throw ConfigError("dinv data shapes: --out DIR is required\n" + std::string(kUsage));
  data::ShapesOptions options;
  options.train = integer_option(o, "train", options.train);
  options.test = integer_option(o, "test", options.test);
  options.seed = static_cast<std::uint64_t>(integer_option(o, "seed", 0));
  options.resolution = integer_option(o, "resolution", options.resolution);
  if (world.is_root()) data::write_shapes(o.at("out"), options);
  log::info("shapes dataset: " + std::to_string(options.train) + " train + " + std::to_string(options.test) +
            " test images at " + std::to_string(options.resolution) + " px, seed " + std::to_string(options.seed) +
            " -> " + o.at("out"));
  return 0;
}

void write_npy(const fs::path& path, const at::Tensor& t, const std::string& descr) {
  std::string shape;
  for (auto d : t.sizes()) shape += std::to_string(d) + ", ";
  if (t.dim() > 1) shape.resize(shape.size() - 2);
  std::string header = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': (" + shape + "), }";
  header.append(64 - (10 + header.size() + 1) % 64, ' ');
  header += '\n';
  std::ofstream out(path, std::ios::binary);
  const std::uint16_t len = static_cast<std::uint16_t>(header.size());
  out.write("\x93NUMPY\x01\x00", 8);
  out.put(static_cast<char>(len & 0xFF)).put(static_cast<char>(len >> 8));
  out << header;
  auto c = t.contiguous();
  out.write(static_cast<const char*>(c.data_ptr()), static_cast<std::streamsize>(c.nbytes()));
  if (!out) throw IoError("cannot write '" + path.string() + "'");
}

int run_export(dist::World& world, const std::vector<std::string>& args) {
  std::vector<std::string> rest;
  std::string out;
  for (std::size_t i = 1; i < args.size(); ++i) {
    if (args[i] == "--out" && i + 1 < args.size())
      out = args[++i];
    else if (args[i].rfind("--out=", 0) == 0)
      out = args[i].substr(6);
    else
      rest.push_back(args[i]);
  }
  if (out.empty()) throw ConfigError("dinv data export: --out DIR is required\n" + std::string(kUsage));
  auto parsed = split_args(rest);
  auto config = Config::resolve(schema(), parsed.config_files, parsed.overrides);
  auto dataset = data::make_dataset(config, "data");
  if (!dataset) throw ConfigError("dinv data export: data.format is 'none': nothing to export");
  if (!world.is_root()) return 0;
  std::vector<at::Tensor> images;
  auto labels = at::empty({dataset->size()}, at::kLong);
  for (std::int64_t i = 0; i < dataset->size(); ++i) {
    auto example = dataset->get(i);
    if (!images.empty() && example.image.sizes() != images[0].sizes())
      throw Error("dinv data export: image " + std::to_string(i) + " is " + c10::str(example.image.sizes()) +
                  ", image 0 is " + c10::str(images[0].sizes()) + ": export needs equal sizes");
    images.push_back(example.image);
    labels[i] = example.label;
  }
  fs::create_directories(out);
  write_npy(fs::path(out) / "images.npy", at::stack(images), "|u1");
  write_npy(fs::path(out) / "labels.npy", labels, "<i8");
  std::ofstream info(fs::path(out) / "info.txt");
  info << "describe: " << dataset->describe() << "\nfingerprint: " << dataset->fingerprint() << "\nclasses:";
  for (const auto& n : dataset->class_names()) info << " " << n;
  info << "\n";
  std::cout << dataset->describe() << "\n";
  return 0;
}

// `data info`: describe whatever the [data] keys name; captioned folders too.
int run_info(dist::World& world, const std::vector<std::string>& args) {
  std::vector<std::string> rest;
  bool verify = false;
  for (std::size_t i = 1; i < args.size(); ++i) {
    if (args[i] == "--verify")
      verify = true;
    else
      rest.push_back(args[i]);
  }
  auto parsed = split_args(rest);
  auto config = Config::resolve(schema(), parsed.config_files, parsed.overrides);
  if (!world.is_root()) return 0;
  const auto format = config.get_string("data.format");
  if (format == "captioned") {
    const auto root = config.get_string("data.root");
    if (root.empty()) config.reject("data.root", "format 'captioned' needs the folder that holds metadata.jsonl");
    const auto corpus = data::open_captioned(root);
    if (verify)
      for (std::int64_t i = 0; i < corpus->size(); ++i) corpus->get(i);
    std::cout << corpus->describe() << "\nformat: captioned\nimages: " << corpus->size()
              << "\nresolution: " << corpus->resolution() << "\nfingerprint: " << corpus->fingerprint()
              << "\nfirst caption: " << corpus->get(0).text << "\n";
    return 0;
  }
  auto dataset = data::make_dataset(config, "data");
  if (!dataset) throw ConfigError("dinv data info: data.format is 'none': no dataset to describe");
  if (verify)
    for (std::int64_t i = 0; i < dataset->size(); ++i) dataset->get(i);
  std::cout << dataset->describe() << "\nformat: " << format << "\nimages: " << dataset->size()
            << "\nfingerprint: " << dataset->fingerprint() << "\nclasses:";
  for (const auto& n : dataset->class_names()) std::cout << " " << n;
  std::cout << "\n";
  return 0;
}

}  // namespace

int run_data(dist::World& world, const std::vector<std::string>& args) {
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    std::cout << kUsage << "\nconfiguration keys (export, and every command that reads datasets):"
              << schema().help({"data", "syn"});
    return args.empty() ? 2 : 0;
  }
  if (args[0] == "shapes") return run_shapes(world, args);
  if (args[0] == "export") return run_export(world, args);
  if (args[0] == "info") return run_info(world, args);
  throw ConfigError("dinv data: unknown subcommand '" + args[0] + "', expected shapes, export or info\n" + kUsage);
}

}  // namespace dinv::cli
