// `dinv data shapes|export|info`: make the procedural dataset (or its
// captioned corpus); export any dataset the [data] keys describe as .npy
// arrays (inspection, and the reader tests, which compare the decoded pixels
// with what Python wrote); describe a dataset, captioned folders included.
#include <ATen/ATen.h>

#include <filesystem>
#include <fstream>
#include <iostream>

#include "dinv/cli/data_command.h"

#include "dinv/cli/arguments.h"
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

const char* kExportUsage =
    "usage: dinv data export --out DIR [--config FILE] [--data.format=...] [--data.root=...] [--data.split=...]\n\n"
    "Decode a dataset into DIR/images.npy (uint8 [N,H,W,3]), DIR/labels.npy (int64 [N]), DIR/info.txt.";
const char* kInfoUsage =
    "usage: dinv data info [--verify] [--config FILE] [--data.format=...] [--data.root=...] [--data.split=...]\n\n"
    "Open a dataset (any format, captioned included) and print what it is, its size and fingerprint.";
const char* kUsage =
    "usage: dinv data shapes --out DIR [--train N] [--test N] [--seed S] [--resolution R] [--background B]\n"
    "       dinv data shapes --captioned --out DIR [--count N] [--seed S] [--resolution R] [--striped-fraction F]\n"
    "       dinv data export --out DIR [--config FILE] [--data.format=...] [--data.root=...] [--data.split=...]\n"
    "       dinv data info [--verify] [--config FILE] [--data.format=...] [--data.root=...] [--data.split=...]\n"
    "       dinv data SUBCOMMAND --help lists every option of a subcommand\n"
    "shapes: the procedural 10-class dataset, or (--captioned) a captioned pretraining corpus\n"
    "export: decode a dataset into .npy arrays\n"
    "info: open a dataset (any format, captioned included) and print what it is, its size and fingerprint\n";

Arguments shapes_arguments() {
  Arguments a(
      "dinv data shapes",
      "usage: dinv data shapes --out DIR [--train N] [--test N] [--seed S] [--resolution R] [--background B]\n"
      "       dinv data shapes --captioned --out DIR [--count N] [--seed S] [--resolution R] [--striped-fraction F]\n\n"
      "The procedural 10-class dataset (CIFAR-10 binary at 32 px, PNG folders otherwise), or with\n"
      "--captioned a captioned pretraining corpus of the same shapes and more (DIR/metadata.jsonl,\n"
      "DIR/images/NNNNNN.png).");
  const data::ShapesOptions labelled;
  const data::CaptionedShapesOptions captioned;
  a.value("out", "DIR", "the folder to write (required)")
      .flag("captioned", "write the captioned corpus instead of the labelled dataset")
      .value("train", "N", "labelled: training images (default " + std::to_string(labelled.train) + ")")
      .value("test", "N", "labelled: test images (default " + std::to_string(labelled.test) + ")")
      .value("count", "N", "--captioned: images (default " + std::to_string(captioned.count) + ")")
      .value("seed", "S", "seed of the drawing (default 0)")
      .value("background", "B",
             "labelled: gradient (default) or striped backgrounds (a domain of its own, for domain-shift "
             "experiments)")
      .value("striped-fraction", "F",
             "--captioned: the fraction of images with striped backgrounds, never named in their captions "
             "(default 0)")
      .value("resolution", "R",
             "image size in pixels (default " + std::to_string(labelled.resolution) + ", captioned " +
                 std::to_string(captioned.resolution) + ")");
  return a;
}

// export and info read the dataset that the [data] keys describe.
Arguments dataset_arguments(const std::string& sub, const std::string& usage) {
  Arguments a("dinv data " + sub, usage);
  a.pass_unknown().epilog("\nconfiguration keys:" + schema().help({"data", "syn"}));
  return a;
}

int run_captioned_shapes(dist::World& world, const Arguments& a) {
  for (const char* key : {"train", "test", "background"})
    if (a.has(key)) a.reject(std::string("--captioned: unknown option --") + key);
  data::CaptionedShapesOptions options;
  options.count = a.integer("count", options.count, 0);
  options.seed = static_cast<std::uint64_t>(a.integer("seed", 0, 0));
  options.resolution = a.integer("resolution", options.resolution, 0);
  options.striped_fraction = a.real("striped-fraction", options.striped_fraction);
  const std::string out = a.get("out");
  if (world.is_root()) data::write_captioned_shapes(out, options);
  log::info("captioned shapes corpus: " + std::to_string(options.count) + " images at " +
            std::to_string(options.resolution) + " px, seed " + std::to_string(options.seed) + " -> " + out);
  return 0;
}

int run_shapes(dist::World& world, const std::vector<std::string>& args) {
  Arguments a = shapes_arguments();
  if (!a.parse_or_print_help(args)) return 0;
  a.require("out");
  if (a.is_set("captioned")) return run_captioned_shapes(world, a);
  for (const char* key : {"count", "striped-fraction"})
    if (a.has(key))
      throw ConfigError(std::string("dinv data shapes: --") + key +
                        " is an option of --captioned (the labelled set takes --train, --test and --background)");
  data::ShapesOptions options;
  options.train = a.integer("train", options.train, 0);
  options.test = a.integer("test", options.test, 0);
  options.seed = static_cast<std::uint64_t>(a.integer("seed", 0, 0));
  options.resolution = a.integer("resolution", options.resolution, 0);
  if (a.has("background")) options.background = data::parse_background(a.get("background"), "--background");
  const std::string out = a.get("out");
  if (world.is_root()) data::write_shapes(out, options);
  log::info("shapes dataset: " + std::to_string(options.train) + " train + " + std::to_string(options.test) +
            " test images at " + std::to_string(options.resolution) + " px, " +
            data::background_names()[static_cast<int>(options.background)] + " backgrounds, seed " +
            std::to_string(options.seed) + " -> " + out);
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
  Arguments a = dataset_arguments("export", kExportUsage);
  a.value("out", "DIR", "the folder to write images.npy, labels.npy and info.txt into (required)");
  if (!a.parse_or_print_help(args)) return 0;
  const std::string out = a.get("out");
  auto parsed = split_args(a.unknown());
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
  Arguments a = dataset_arguments("info", kInfoUsage);
  a.flag("verify", "also decode every image");
  if (!a.parse_or_print_help(args)) return 0;
  const bool verify = a.is_set("verify");
  auto parsed = split_args(a.unknown());
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
  const std::vector<std::string> rest(args.begin() + 1, args.end());
  if (args[0] == "shapes") return run_shapes(world, rest);
  if (args[0] == "export") return run_export(world, rest);
  if (args[0] == "info") return run_info(world, rest);
  throw ConfigError("dinv data: unknown subcommand '" + args[0] + "', expected shapes, export or info\n" + kUsage);
}

}  // namespace dinv::cli
