// The shared small helpers: core/util.h (strings, shapes, parameter counts),
// io/files.h (whole-file reads, atomic replacement) and the subcommand
// argument parser cli/arguments.h.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

#include <torch/nn/modules/linear.h>

#include "dinv/cli/arguments.h"
#include "dinv/core/error.h"
#include "dinv/core/util.h"
#include "dinv/data/formats.h"
#include "dinv/data/readers.h"
#include "dinv/io/files.h"
#include "error_message.h"

namespace dinv {
namespace {

using testing::error_message_of;
using Strings = std::vector<std::string>;

TEST(Util, JoinAndEndsWith) {
  EXPECT_EQ(join({"a", "b", "c"}), "a, b, c");
  EXPECT_EQ(join({"a", "b"}, ","), "a,b");
  EXPECT_EQ(join({}), "");
  EXPECT_TRUE(ends_with("weights.safetensors", ".safetensors"));
  EXPECT_FALSE(ends_with("weights.bin", ".safetensors"));
  EXPECT_FALSE(ends_with("x", "xx"));
}

TEST(Util, SplitKeepsEmptyItemsLikeGetline) {
  EXPECT_EQ(split("a,,b,"), (Strings{"a", "", "b"}));
  EXPECT_EQ(split(""), Strings{});
  EXPECT_EQ(split("a;b", ';'), (Strings{"a", "b"}));
}

TEST(Util, SplitListTrimsAndDropsEmptyItems) {
  EXPECT_EQ(split_list(" a, b ,,\tc,"), (Strings{"a", "b", "c"}));
  EXPECT_EQ(split_list(" , "), Strings{});
  EXPECT_EQ(trim(" \t x y \r\n"), "x y");
  EXPECT_EQ(trim("   "), "");
}

TEST(Util, ShapeAndParameterCount) {
  EXPECT_EQ(shape_str({2, 3, 32}), "[2, 3, 32]");
  EXPECT_EQ(shape_str({}), "[]");
  torch::nn::Linear linear(3, 4);
  EXPECT_EQ(parameter_count(*linear), 3 * 4 + 4);
}

TEST(Files, WriteAtomicThenRead) {
  const std::string path = ::testing::TempDir() + "/dinv_util_text.txt";
  io::write_text_atomic(path, "first\n");
  io::write_text_atomic(path, std::string("second\0bytes", 12));
  EXPECT_EQ(io::read_text_file(path), std::string("second\0bytes", 12));
  EXPECT_FALSE(std::ifstream(path + ".tmp").good());  // moved into place, not copied
  std::remove(path.c_str());
}

TEST(Files, ErrorsNameTheFiles) {
  const std::string missing = ::testing::TempDir() + "/dinv_util_missing/none.txt";
  const auto read = error_message_of<IoError>([&] { io::read_text_file(missing); });
  EXPECT_NE(read.find("cannot read " + missing), std::string::npos) << read;
  const auto move = error_message_of<IoError>([&] { io::replace_file(missing + ".tmp", missing, "checkpoint"); });
  EXPECT_NE(move.find("cannot move checkpoint " + missing + ".tmp to " + missing + ": "), std::string::npos) << move;
}

cli::Arguments sample_arguments() {
  cli::Arguments a("dinv test", "usage: dinv test DIR [options]");
  a.positional("DIR", "a folder")
      .value("steps", "N", "step count")
      .value("guidance", "W", "a scale")
      .value("name", "S", "a name")
      .flag("karras", "a switch");
  return a;
}

TEST(Arguments, ValuesFlagsAndPositionalsInAnyOrder) {
  auto a = sample_arguments();
  a.parse({"--steps", "7", "dir", "--guidance=-1.5", "--karras"});
  EXPECT_EQ(a.positionals(), Strings{"dir"});
  EXPECT_EQ(a.integer("steps", 50), 7);
  EXPECT_DOUBLE_EQ(a.real("guidance", 2.0), -1.5);
  EXPECT_TRUE(a.is_set("karras"));
  EXPECT_FALSE(a.has("name"));
  EXPECT_EQ(a.get("name", "fallback"), "fallback");
  EXPECT_EQ(a.integer("missing", 3), 3);
  EXPECT_FALSE(a.help_asked());
}

TEST(Arguments, NegativeNumberAsSeparateValue) {
  auto a = sample_arguments();
  a.parse({"dir", "--guidance", "-1"});
  EXPECT_DOUBLE_EQ(a.real("guidance", 2.0), -1.0);
}

TEST(Arguments, HelpListsEveryOption) {
  auto a = sample_arguments();
  a.parse({"-h"});
  EXPECT_TRUE(a.help_asked());
  const std::string help = a.help();
  for (const char* s : {"usage: dinv test DIR", "DIR  a folder", "--steps N", "step count", "--karras", "a switch"})
    EXPECT_NE(help.find(s), std::string::npos) << s << "\n" << help;
}

TEST(Arguments, MistakesNameTheOptionAndCommand) {
  const auto parse = [](const Strings& args) {
    return error_message_of<ConfigError>([&] { sample_arguments().parse(args); });
  };
  EXPECT_NE(parse({"dir", "--bogus"}).find("dinv test: unknown option '--bogus'"), std::string::npos);
  EXPECT_NE(parse({"dir", "--steps"}).find("dinv test: "), std::string::npos);
  auto a = sample_arguments();
  a.parse({"--steps", "x", "--guidance", "1e"});
  EXPECT_EQ(error_message_of<ConfigError>([&] { a.integer("steps", 1); }), "dinv test: --steps=x is not an integer");
  EXPECT_EQ(error_message_of<ConfigError>([&] { a.real("guidance", 1); }), "dinv test: --guidance=1e is not a number");
  a.parse({"--steps", "-2"});
  EXPECT_EQ(error_message_of<ConfigError>([&] { a.integer("steps", 1, 0); }),
            "dinv test: --steps=-2 is not an integer >= 0");
  EXPECT_NE(error_message_of<ConfigError>([&] { a.require("name"); }).find("dinv test: --name is required"),
            std::string::npos);
  EXPECT_NE(error_message_of<ConfigError>([&] { a.one_positional("folder"); }).find("expected one folder, got 0"),
            std::string::npos);
}

TEST(Arguments, UnknownOptionsPassedOnInOrder) {
  cli::Arguments a("dinv data info", "usage");
  a.flag("verify", "decode").pass_unknown();
  a.parse({"--config", "a.ini", "--data.format=npz", "--verify", "-c", "b.ini"});
  EXPECT_TRUE(a.is_set("verify"));
  EXPECT_EQ(a.unknown(), (Strings{"--config", "a.ini", "--data.format=npz", "-c", "b.ini"}));
}

TEST(DatasetFormats, OneTableForNamesReadersAndNormalisation) {
  Strings names;
  for (const auto& f : data::dataset_formats()) {
    names.push_back(f.name);
    EXPECT_EQ(static_cast<bool>(f.open), f.name != "none" && f.name != "captioned") << f.name;
  }
  EXPECT_EQ(names, (Strings{"none", "cifar10", "cifar100", "stl10", "folder", "medmnist", "store", "captioned",
                            "webdataset"}));
  EXPECT_EQ(data::dataset_format("cifar100").normalize, "cifar100");
  EXPECT_EQ(data::dataset_format("folder").normalize, "imagenet");
  EXPECT_EQ(data::dataset_format("webdataset").normalize, "shapes");
  EXPECT_EQ(error_message_of<ConfigError>([] { data::dataset_format("cifar11"); }),
            "unknown dataset format 'cifar11', expected one of: cifar10, cifar100, stl10, folder, medmnist, store, "
            "captioned, webdataset");
  const auto refusal = error_message_of<ConfigError>([] { data::make_dataset("captioned", "/x", "train"); });
  EXPECT_NE(refusal.find("need a labelled format (cifar10, cifar100, stl10, folder, medmnist, store, webdataset)"),
            std::string::npos)
      << refusal;
  EXPECT_EQ(data::make_dataset("none", "", "train"), nullptr);
}

}  // namespace
}  // namespace dinv
