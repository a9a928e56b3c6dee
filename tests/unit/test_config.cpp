#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

#include "dinv/core/config.h"
#include "dinv/core/error.h"

namespace dinv {
namespace {

ConfigSchema test_schema() {
  ConfigSchema s;
  s.add("embed.lr", 0.03, "learning rate").greater_than(0);
  s.add("embed.steps", 100, "steps").min(1).max(1000000);
  s.add("embed.dtype", "fp32", "dtype").choices({"fp32", "fp16", "bf16"});
  s.add("embed.amp", false, "autocast");
  s.add_without_default("model.path", ValueKind::string, "model folder");
  return s;
}

std::string write_file(const std::string& name, const std::string& text) {
  const std::string path = ::testing::TempDir() + "/" + name;
  std::ofstream(path) << text;
  return path;
}

std::string error_of(const std::vector<std::string>& files, const std::vector<std::string>& overrides,
                     const std::vector<std::string>& required = {}) {
  try {
    Config::resolve(test_schema(), files, overrides, required);
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.exit_code(), ExitCode::usage);
    return e.what();
  }
  ADD_FAILURE() << "no ConfigError";
  return "";
}

TEST(Config, DefaultsFilesAndOverridesLaterWins) {
  const auto a = write_file("a.ini", "[embed]\nlr = 0.1\nsteps = 5\n");
  const auto b = write_file("b.ini", "# comment\n[embed]\nsteps = 7 \n");
  auto cfg = Config::resolve(test_schema(), {a, b}, {"--embed.dtype=bf16", "--embed.amp"});
  EXPECT_DOUBLE_EQ(cfg.get_real("embed.lr"), 0.1);
  EXPECT_EQ(cfg.get_int("embed.steps"), 7);
  EXPECT_EQ(cfg.value("embed.steps").origin, b + ":3");
  EXPECT_EQ(cfg.get_string("embed.dtype"), "bf16");
  EXPECT_TRUE(cfg.get_bool("embed.amp"));
  EXPECT_FALSE(cfg.has("model.path"));
}

TEST(Config, IniRoundTrip) {
  auto cfg = Config::resolve(test_schema(), {}, {"--embed.lr=0.5", "--model.path=/m"});
  const auto text = cfg.to_ini();
  EXPECT_NE(text.find("[embed]\nlr = 0.5\n"), std::string::npos) << text;
  const auto again = Config::resolve(test_schema(), {write_file("rt.ini", text)}, {});
  EXPECT_EQ(again.to_ini(), text);
}

TEST(Config, IniRoundTripOfKeysBelowASubsection) {
  // retrieve.pool.* (the retrieval pool's dataset keys) sit one level below
  // their section; the recorded configuration must read back as written.
  ConfigSchema s;
  s.add("retrieve.k", 5, "neighbours");
  s.add("retrieve.pool.format", "folder", "pool format");
  auto cfg = Config::resolve(s, {}, {"--retrieve.pool.format=webdataset", "--retrieve.k=3"});
  const auto text = cfg.to_ini();
  const auto again = Config::resolve(s, {write_file("sub.ini", text)}, {});
  EXPECT_EQ(again.get_string("retrieve.pool.format"), "webdataset") << text;
  EXPECT_EQ(again.get_int("retrieve.k"), 3);
  EXPECT_EQ(again.to_ini(), text);
}

TEST(Config, UnknownKeyNamesFileLineAndSuggestion) {
  const auto f = write_file("u.ini", "[embed]\nlr = 0.1\nlearning_rate = 3\n");
  const auto msg = error_of({f}, {});
  EXPECT_NE(msg.find(f + ":3"), std::string::npos) << msg;
  EXPECT_NE(msg.find("unknown configuration key 'embed.learning_rate'"), std::string::npos) << msg;
}

TEST(Config, UnknownKeyOnCommandLineSuggestsClosest) {
  const auto msg = error_of({}, {"--embed.stesp=3"});
  EXPECT_NE(msg.find("command line"), std::string::npos) << msg;
  EXPECT_NE(msg.find("did you mean embed.steps"), std::string::npos) << msg;
}

TEST(Config, BadTypeNamesKeyValueAndWhatIsAllowed) {
  const auto f = write_file("t.ini", "[embed]\nsteps = many\n");
  const auto msg = error_of({f}, {});
  EXPECT_NE(msg.find(f + ":2: embed.steps = 'many' is not an integer"), std::string::npos) << msg;
  EXPECT_NE(msg.find("allowed: an integer >= 1 and <= 1000000"), std::string::npos) << msg;
}

TEST(Config, OutOfRangeAndChoices) {
  EXPECT_NE(error_of({}, {"--embed.lr=0"}).find("embed.lr = '0' is out of range (allowed: a number > 0)"),
            std::string::npos);
  EXPECT_NE(error_of({}, {"--embed.steps=0"}).find("out of range"), std::string::npos);
  EXPECT_NE(error_of({}, {"--embed.lr=nan"}).find("not a finite number"), std::string::npos);
  EXPECT_NE(error_of({}, {"--embed.dtype=fp64"}).find("allowed: one of fp32, fp16, bf16"), std::string::npos);
}

TEST(Config, MissingRequiredKey) {
  const auto msg = error_of({}, {}, {"model.path"});
  EXPECT_NE(msg.find("missing required configuration key 'model.path'"), std::string::npos) << msg;
}

TEST(Config, UnreadableFile) {
  const auto msg = error_of({"/nonexistent/x.ini"}, {});
  EXPECT_NE(msg.find("cannot read configuration file '/nonexistent/x.ini'"), std::string::npos) << msg;
}

TEST(Config, MalformedLines) {
  EXPECT_NE(error_of({write_file("m1.ini", "[embed\n")}, {}).find(":1: malformed section header"), std::string::npos);
  EXPECT_NE(error_of({write_file("m2.ini", "[embed]\njust words\n")}, {}).find(":2: expected 'key = value'"),
            std::string::npos);
  EXPECT_NE(error_of({write_file("m3.ini", "lr = 1\n")}, {}).find(":1: key 'lr' is outside any [section]"),
            std::string::npos);
}

TEST(Config, RejectNamesOrigin) {
  auto cfg = Config::resolve(test_schema(), {}, {"--embed.steps=3"});
  try {
    cfg.reject("embed.steps", "must divide 10");
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(), "command line: embed.steps = '3' must divide 10");
  }
}

}  // namespace
}  // namespace dinv
