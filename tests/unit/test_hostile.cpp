// Hostile input at the level of the readers' functions (issue 19): each test
// builds the malformed input itself and checks the refusal names what is
// wrong. End-to-end versions through the dinv binary are in tests/hostile/.
#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "dinv/core/config.h"
#include "dinv/core/error.h"
#include "dinv/diffusion/noise_schedule.h"
#include "dinv/generation/perturb.h"
#include "dinv/io/json.h"
#include "dinv/io/safetensors.h"
#include "dinv/sd/clip_text.h"
#include "dinv/sd/presets.h"
#include "dinv/sd/unet.h"
#include "dinv/sd/vae.h"
#include "error_message.h"

namespace dinv {
namespace {

using testing::error_message_of;

#define EXPECT_MENTIONS(msg, needle) EXPECT_NE((msg).find(needle), std::string::npos) << (msg)

// ---- INI ---------------------------------------------------------------------------

TEST(HostileIni, DuplicateKeyNamesBothLines) {
  const auto msg = error_message_of<ConfigError>([] { parse_ini("[a]\nx = 1\ny = 2\nx = 3\n", "f.ini"); });
  EXPECT_MENTIONS(msg, "f.ini:4");
  EXPECT_MENTIONS(msg, "f.ini:2");
  EXPECT_MENTIONS(msg, "a.x");
  // The section.key spelling is the same key.
  EXPECT_MENTIONS(error_message_of<ConfigError>([] { parse_ini("[a]\nx = 1\n[b]\na.x = 3\n", "g.ini"); }), "g.ini:2");
  // One setting per file is fine.
  EXPECT_EQ(parse_ini("[a]\nx = 1\n[b]\nx = 3\n", "h.ini").size(), 2u);
}

TEST(HostileIni, OverlongLineNamesFileAndLine) {
  const std::string text = "[a]\nx = " + std::string(kMaxConfigLine, '1') + "\n";
  EXPECT_MENTIONS(error_message_of<ConfigError>([&] { parse_ini(text, "long.ini"); }), "long.ini:2");
}

TEST(HostileIni, LongNumberIsRefusedBeforeConversion) {
  ConfigSchema s;
  s.add("run.seed", 1, "seed");
  s.add("run.name", "", "name");
  const std::string path = ::testing::TempDir() + "/hostile_long.ini";
  std::ofstream(path) << "[run]\nseed = " << std::string(200000, '9') << "\n";
  const auto msg = error_message_of<ConfigError>([&] { Config::resolve(s, {path}, {}); });
  EXPECT_MENTIONS(msg, path + ":2");
  EXPECT_MENTIONS(msg, "200000 characters");
  EXPECT_MENTIONS(error_message_of<ConfigError>(
                      [&] { Config::resolve(s, {}, {"--run.name=" + std::string(kMaxConfigValue + 1, 'n')}); }),
                  "command line");
}

// Found by fuzz_ini: Boost's UTF-8 conversion throws std::logic_error
// ("character conversion failed"), which reached main as "unexpected: ...".
TEST(HostileIni, InvalidUtf8ValueIsAConfigError) {
  ConfigSchema s;
  s.add("embed.lr", 0.03, "lr");
  s.add("store.path", "", "path");
  const std::string path = ::testing::TempDir() + "/hostile_utf8.ini";
  std::ofstream(path) << "embed.lr =`1e-\xb3"
                      << "3\n";
  EXPECT_MENTIONS(error_message_of<ConfigError>([&] { Config::resolve(s, {path}, {}); }), "embed.lr");
  EXPECT_MENTIONS(error_message_of<ConfigError>([&] { Config::resolve(s, {}, {"--store.path=a\xff\xfe"}); }),
                  "store.path");
}

TEST(HostileIni, DirectoryIsNotAConfigFile) {
  EXPECT_MENTIONS(error_message_of<ConfigError>([] { read_ini(::testing::TempDir()); }), "is a directory");
}

// ---- JSON ---------------------------------------------------------------------------

TEST(HostileJson, NestingIsCappedBeforeParsing) {
  const std::string deep = std::string(200000, '[') + std::string(200000, ']');
  const auto msg = error_message_of<IoError>([&] { io::parse_json(deep, "deep.json"); });
  EXPECT_MENTIONS(msg, "deep.json");
  EXPECT_MENTIONS(msg, "deeper than 128");
  // Brackets inside strings do not count; 128 levels are fine.
  EXPECT_NO_THROW(io::parse_json("[\"" + std::string(1000, '[') + "\"]", "s.json"));
  EXPECT_NO_THROW(io::parse_json(std::string(128, '[') + std::string(128, ']'), "ok.json"));
}

// Found by fuzz_json: a number beyond double's range throws nlohmann's
// out_of_range, not parse_error, and escaped as "unexpected: ...".
TEST(HostileJson, NumberOverflowIsAnIoError) {
  EXPECT_MENTIONS(error_message_of<IoError>([] { io::parse_json("[2e505]", "big.json"); }), "big.json");
  // The same inside a safetensors header.
  const std::string header = R"({"t": {"dtype": "F32", "shape": [2e505], "data_offsets": [0, 4]}})";
  const std::string path = ::testing::TempDir() + "/hostile_overflow.safetensors";
  {
    std::ofstream out(path, std::ios::binary);
    const std::uint64_t n = header.size();
    out.write(reinterpret_cast<const char*>(&n), 8);
    out << header << std::string(4, '\0');
  }
  EXPECT_MENTIONS(error_message_of<IoError>([&] { io::SafetensorsFile f(path); }), "hostile_overflow.safetensors");
}

TEST(HostileJson, HugeFloatIsNotCastToAnInteger) {
  const io::Json j = io::parse_json(R"({"a": 1e30, "b": -1e300, "c": 18446744073709551615})", "n.json");
  const io::JsonObject o(j, "n.json");
  EXPECT_MENTIONS(error_message_of<IoError>([&] { o.get_int("a"); }), "key 'a'");
  EXPECT_MENTIONS(error_message_of<IoError>([&] { o.get_int("b"); }), "key 'b'");
  EXPECT_MENTIONS(error_message_of<IoError>([&] { o.get_int("c"); }), "key 'c'");
}

// ---- model configs -------------------------------------------------------------------

io::Json with(io::Json j, const std::string& key, const io::Json& value) {
  j[key] = value;
  return j;
}

TEST(HostileModelConfig, UNetSizesAreBoundedBeforeUse) {
  const io::Json base = sd::preset_unet_config("tiny");
  ASSERT_NO_THROW(sd::UNetConfig::from_json(base, "unet/config.json"));
  for (const auto& [key, value] : std::vector<std::pair<std::string, io::Json>>{
           {"norm_num_groups", 0},
           {"norm_num_groups", -1},
           {"block_out_channels", {std::int64_t(1) << 36, std::int64_t(1) << 36}},
           {"in_channels", -4},
           {"out_channels", 0},
           {"cross_attention_dim", -1},
           {"attention_head_dim", 0},
           {"layers_per_block", 1000000},
           {"transformer_layers_per_block", 0},
           {"time_embedding_dim", std::int64_t(1) << 40},
           {"sample_size", -5},
           {"conv_in_kernel", 1001},
       }) {
    const auto msg =
        error_message_of<ModelError>([&] { sd::UNetConfig::from_json(with(base, key, value), "unet/config.json"); });
    EXPECT_MENTIONS(msg, "unet/config.json");
    EXPECT_MENTIONS(msg, "'" + key + "'");
  }
}

TEST(HostileModelConfig, VaeSizesAreBoundedBeforeUse) {
  const io::Json base = sd::preset_vae_config("tiny");
  ASSERT_NO_THROW(sd::VaeConfig::from_json(base, "vae/config.json"));
  for (const auto& [key, value] : std::vector<std::pair<std::string, io::Json>>{
           {"norm_num_groups", 0},
           {"latent_channels", 0},
           {"in_channels", -3},
           {"block_out_channels", {std::int64_t(1) << 36, std::int64_t(1) << 36}},
           {"layers_per_block", 1000000},
       }) {
    const auto msg =
        error_message_of<ModelError>([&] { sd::VaeConfig::from_json(with(base, key, value), "vae/config.json"); });
    EXPECT_MENTIONS(msg, "vae/config.json");
    EXPECT_MENTIONS(msg, "'" + key + "'");
  }
}

TEST(HostileModelConfig, ClipSizesAreCapped) {
  const io::Json base = io::parse_json(R"({"hidden_size": 32, "num_attention_heads": 4})", "c");
  ASSERT_NO_THROW(sd::ClipTextConfig::from_json(base, "text_encoder/config.json"));
  for (const char* key :
       {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "max_position_embeddings"}) {
    const auto msg = error_message_of<ModelError>(
        [&] { sd::ClipTextConfig::from_json(with(base, key, std::int64_t(1) << 40), "text_encoder/config.json"); });
    EXPECT_MENTIONS(msg, "text_encoder/config.json");
    EXPECT_MENTIONS(msg, key);
  }
}

TEST(HostileModelConfig, SchedulerTimestepsAreBounded) {
  namespace dd = dinv::diffusion;
  for (const char* text : {R"({"num_train_timesteps": 1e13})", R"({"num_train_timesteps": 10000000000000})",
                           R"({"num_train_timesteps": 1e300})", R"({"num_train_timesteps": 1.5})"}) {
    const auto msg =
        error_message_of<ConfigError>([&] { dd::SchedulerConfig::from_json(text, "scheduler_config.json"); });
    EXPECT_MENTIONS(msg, "scheduler_config.json");
    EXPECT_MENTIONS(msg, "num_train_timesteps");
  }
  EXPECT_NO_THROW(dd::SchedulerConfig::from_json(R"({"num_train_timesteps": 1000.0})", "s"));
}

// ---- the last embedding group ---------------------------------------------------------

TEST(HostilePartners, SmallLastGroupIsRefusedNamingIt) {
  // 30 images in groups of 7: the last group holds 2 images (28, 29).
  const auto msg = error_message_of<ConfigError>([] { generation::check_partner_groups(30, 7, 5, "embed"); });
  EXPECT_MENTIONS(msg, "images 28..29");
  EXPECT_MENTIONS(msg, "holds only 2 images");
  EXPECT_MENTIONS(msg, "embed.num_images = 28");
  // Full groups, or a last group with num_samples + 1 images, are fine.
  EXPECT_NO_THROW(generation::check_partner_groups(28, 7, 5, "embed"));
  EXPECT_NO_THROW(generation::check_partner_groups(34, 7, 5, "embed"));
  EXPECT_THROW(generation::check_partner_groups(33, 7, 5, "embed"), ConfigError);
  // Groups too small in general.
  EXPECT_MENTIONS(error_message_of<ConfigError>([] { generation::check_partner_groups(40, 4, 5, "generate"); }),
                  "embed.group_size is 4");
  // Exactly what draw_partners can serve: a group of count + 1 images always works.
  EXPECT_NO_THROW(generation::draw_partners({0, 1, 2, 3, 4, 5}, 5, 5, 1));
}

}  // namespace
}  // namespace dinv
