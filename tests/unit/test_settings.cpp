// The settings declaration layer (core/settings.h) and the embed, generate,
// retrieve, evaluate and pretrain declarations: the stored text stays what
// stores (and pretrain's folders) written before the declaration hold, and
// every output-changing setting, changed alone, makes the resume check refuse
// naming it (walked from the declaration itself).
#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <vector>

#include "dinv/core/error.h"
#include "dinv/core/seed.h"
#include "dinv/classify/options.h"
#include "dinv/cli/command.h"
#include "dinv/core/settings.h"
#include "dinv/data/readers.h"
#include "dinv/diffusion/scheduler.h"
#include "dinv/evaluate/evaluate.h"
#include "dinv/generation/generate.h"
#include "dinv/inversion/embed.h"
#include "dinv/pretrain/pretrain.h"
#include "dinv/retrieve/retrieve.h"

namespace dinv {
namespace {

using generation::GenerateSettings;
using inversion::EmbedSettings;

using evaluate::EvaluateSettings;
using pretrain::PretrainSettings;
using retrieve::RetrieveSettings;

// The stages' keys as `dinv` registers them (cli/commands.cpp).
ConfigSchema stage_schema() {
  ConfigSchema s;
  cli::register_run_options(s);
  data::register_data_options(s);
  pretrain::register_pretrain_options(s);
  inversion::register_embed_options(s);
  diffusion::register_diffusion_options(s);
  generation::register_generate_options(s);
  retrieve::register_retrieve_options(s);
  evaluate::register_evaluate_options(s);
  return s;
}

Config resolve(const std::vector<std::string>& overrides) { return Config::resolve(stage_schema(), {}, overrides); }

// A valid value of `spec` other than its default.
std::string other_value(const OptionSpec& spec) {
  const auto d = spec.default_value.value_or("");
  if (spec.kind == ValueKind::boolean) return d == "true" ? "false" : "true";
  for (const auto& c : spec.choices)
    if (c != d) return c;
  // Halved (then valid beside the other defaults: batch_size <= group_size).
  if (spec.kind == ValueKind::integer) return std::stoll(d) > 1 ? std::to_string(std::stoll(d) / 2) : "2";
  if (spec.kind == ValueKind::real) return settings::exact_text(std::stod(d) == 0 ? 0.5 : std::stod(d) / 2);
  return d + " again";
}

// "generate.mode = prompt" -> "--generate.mode=prompt" (the run the entry applies to).
std::vector<std::string> condition_overrides(const std::string& condition) {
  if (condition.empty()) return {};
  const auto eq = condition.find(" = ");
  return {"--" + condition.substr(0, eq) + "=" + condition.substr(eq + 3)};
}

// `given`: what the stage needs on every run (retrieve.model, ...).
template <class S, class Read>
void expect_every_output_setting_refused(const settings::Declaration<S>& declaration, Read read, int at_least,
                                         const std::vector<std::string>& given = {}) {
  const auto schema = stage_schema();
  int walked = 0;
  for (const auto& e : declaration.entries()) {
    if (!e.changes_output || !e.from_config) continue;  // derived values: tested per stage below
    auto overrides = condition_overrides(e.condition);
    overrides.insert(overrides.end(), given.begin(), given.end());
    const S base = read(Config::resolve(schema, {}, overrides));
    const auto value = other_value(*schema.find(e.key));
    overrides.push_back("--" + e.key + "=" + value);
    const S changed = read(Config::resolve(schema, {}, overrides));
    try {
      declaration.require_same("store 's.h5', /x", declaration.text(base), changed, "Use a new store.");
      ADD_FAILURE() << e.key << " = " << value << " continued a store made with the default";
    } catch (const StoreError& err) {
      const std::string msg = err.what();
      EXPECT_NE(msg.find("store 's.h5', /x was written with other settings: " + e.key + " is '"), std::string::npos)
          << msg;
      EXPECT_NE(msg.find("'" + e.text(changed) + "' in this run"), std::string::npos) << msg;
      EXPECT_NE(msg.find("Use a new store."), std::string::npos) << msg;
    }
    ++walked;
  }
  EXPECT_GE(walked, at_least);
}

TEST(Settings, EmbedTextIsTheStoredTextOfBefore) {
  // The text stores made before the declaration hold (precision 17).
  EXPECT_EQ(inversion::embed_declaration().text(EmbedSettings{}),
            "num_tokens=5 group_size=100 batch_size=50 steps=6000 pack_units=1 resolution=128 "
            "interpolation=bicubic lr=0.029999999999999999 beta1=0.90000000000000002 beta2=0.999 eps=1e-08 "
            "weight_decay=0.01 seed=0");
}

TEST(Settings, GenerateTextTagAndAttributesAreThoseOfBefore) {
  const auto& d = generation::generate_declaration();
  GenerateSettings s;
  EXPECT_EQ(d.text(s),
            "mode=embedding num_samples=5 guidance=2 sampler=folder steps=100 sampling_resolution=128 "
            "save_resolution=32 resize_filter=bicubic seed=0 interpolation=0.10000000000000001 "
            "emb_noise=0.10000000000000001 uncond=group_mean");
  EXPECT_EQ(generation::derived_tag(s, "ddim"), "emb_n5_s0.1_noise0.1_w2_ddim100_r128to32_seed0");
  s.uncond = generation::Uncond::empty_prompt;
  s.seed = 7;
  EXPECT_EQ(generation::derived_tag(s, "pndm"), "emb_n5_s0.1_noise0.1_emptyuncond_w2_pndm100_r128to32_seed7");
  s.mode = generation::Mode::prompt;
  s.prompt_per = generation::PromptPer::class_;
  EXPECT_EQ(d.text(s),
            "mode=prompt num_samples=5 guidance=2 sampler=folder steps=100 sampling_resolution=128 "
            "save_resolution=32 resize_filter=bicubic seed=7 prompt=a photo of a {} prompt_per=class");
  EXPECT_EQ(generation::derived_tag(s, "pndm"), "prompt_class_n5_w2_pndm100_r128to32_seed7");
  std::vector<std::string> names;
  for (const auto& [name, value] : d.attributes(s)) names.push_back(name);
  EXPECT_EQ(names, (std::vector<std::string>{"mode", "noise", "interpolation", "guidance", "sampler", "steps",
                                             "sampling_resolution", "save_resolution", "uncond", "num_samples",
                                             "chunk_size"}));
  EXPECT_EQ(std::get<std::string>(d.attributes(s)[0].second), "prompt");
  EXPECT_EQ(std::get<double>(d.attributes(s)[1].second), 0.1);
  EXPECT_EQ(std::get<std::int64_t>(d.attributes(s)[10].second), 40);
}

TEST(Settings, RegistrationAndReadingComeFromTheDeclaration) {
  const auto schema = stage_schema();
  EXPECT_EQ(schema.find("generate.mode")->choices, (std::vector<std::string>{"embedding", "prompt"}));
  EXPECT_EQ(schema.find("generate.prompt_per")->choices, (std::vector<std::string>{"source", "class"}));
  EXPECT_EQ(*schema.find("embed.lr")->default_value, "0.03");
  EXPECT_FALSE(schema.find("generate.preview")->default_value.has_value());
  EXPECT_NE(schema.help({"embed"}).find("--embed.num_tokens (an integer >= 1 and <= 77; default 5)\n"
                                        "      tokens per learned conditioning tensor (T)\n"
                                        "      changes the output of embed\n"),
            std::string::npos);
  EXPECT_NE(schema.help({"run"}).find("changes the output of embed\n      changes the output of generate\n"),
            std::string::npos);
  EXPECT_NE(schema.help({"generate"}).find("changes the output of generate when generate.mode = prompt"),
            std::string::npos);
  const auto help = schema.help({"embed"});
  const auto block = help.find("--embed.checkpoint_every");
  ASSERT_NE(block, std::string::npos);
  EXPECT_EQ(help.substr(block, help.find("  --", block) - block).find("changes the output"), std::string::npos);

  const auto g = generation::generate_settings(
      resolve({"--generate.mode=prompt", "--generate.prompt_per=class", "--run.seed=9", "--generate.preview=3"}));
  EXPECT_EQ(g.mode, generation::Mode::prompt);
  EXPECT_EQ(g.prompt_per, generation::PromptPer::class_);
  EXPECT_EQ(g.seed, 9u);
  EXPECT_EQ(g.preview, 3);
  const auto e = inversion::embed_settings(resolve({"--embed.beta1=0.5", "--embed.num_images=7"}));
  EXPECT_EQ(e.adam.beta1, 0.5);
  EXPECT_EQ(e.num_images, 7);
}

TEST(Settings, EveryOutputSettingOfEmbedIsRefusedByName) {
  expect_every_output_setting_refused(
      inversion::embed_declaration(), [](const Config& c) { return inversion::embed_settings(c); }, 13);
}

TEST(Settings, EveryOutputSettingOfGenerateIsRefusedByName) {
  expect_every_output_setting_refused(
      generation::generate_declaration(), [](const Config& c) { return generation::generate_settings(c); }, 12);
}

TEST(Settings, EveryOutputSettingOfRetrieveIsRefusedByName) {
  expect_every_output_setting_refused(retrieve::retrieve_declaration(),
                                      [](const Config& c) { return retrieve::retrieve_settings(c); }, 4,
                                      {"--retrieve.model=clip"});
}

TEST(Settings, EveryOutputSettingOfEvaluateIsRefusedByName) {
  expect_every_output_setting_refused(evaluate::evaluate_declaration(),
                                      [](const Config& c) { return evaluate::evaluate_settings(c); }, 3,
                                      {"--evaluate.classifier=c", "--evaluate.tags=t"});
}

TEST(Settings, EveryOutputSettingOfPretrainIsRefusedByName) {
  expect_every_output_setting_refused(pretrain::pretrain_declaration(),
                                      [](const Config& c) { return pretrain::pretrain_settings(c); }, 16,
                                      {"--data.format=captioned"});
}

// The settings of a retrieve run once it has resolved resolution and features.
RetrieveSettings retrieve_run() {
  RetrieveSettings s;
  s.resolution = 32;
  s.shard_size = 7;
  // A cache key holds names of the text ("shard_size=") itself.
  s.features = "pool=folder:p:n=40:0794 model=c053 shard_size=7 batch_size=4 data=CIFAR-10:train:n=20:9c1d";
  return s;
}

TEST(Settings, RetrieveTextTagAndAttributesAreThoseOfBefore) {
  const auto& d = retrieve::retrieve_declaration();
  auto s = retrieve_run();
  EXPECT_EQ(d.text(s), "k=5 dedup=0 resolution=32 shard_size=7 features=" + s.features);
  EXPECT_EQ(d.tag(s), "retrieval_k5");
  s.dedup = true;
  s.k = 12;
  EXPECT_EQ(d.text(s), "k=12 dedup=1 resolution=32 shard_size=7 features=" + s.features);
  EXPECT_EQ(d.tag(s), "retrieval_k12_dedup");
  const auto attributes = d.attributes(s);
  std::vector<std::string> names;
  for (const auto& [name, value] : attributes) names.push_back(name);
  EXPECT_EQ(names, (std::vector<std::string>{"k", "dedup", "save_resolution", "chunk_size"}));
  EXPECT_EQ(std::get<std::int64_t>(attributes[0].second), 12);
  EXPECT_EQ(std::get<std::int64_t>(attributes[1].second), 1);
  EXPECT_EQ(std::get<std::int64_t>(attributes[2].second), 32);
  EXPECT_EQ(std::get<std::int64_t>(attributes[3].second), 7);
  EXPECT_EQ(retrieve::retrieve_settings(resolve({"--retrieve.model=m", "--retrieve.dedup=true"})).tag,
            "retrieval_k5_dedup");
}

TEST(Settings, OtherRetrieveFeaturesAreRefusedByNameNotAsShardSize) {
  const auto& d = retrieve::retrieve_declaration();
  const auto base = retrieve_run();
  auto other = base;
  other.features.replace(other.features.find("batch_size=4"), 12, "batch_size=8");
  try {
    d.require_same("store 's.h5', /samples/t", d.text(base), other, "Choose another retrieve.tag.");
    ADD_FAILURE() << "continued";
  } catch (const StoreError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("other settings: the CLIP features (model, pool, queries, shard_size, batch_size) is '" +
                       base.features + "' there, '" + other.features + "' in this run. Choose"),
              std::string::npos)
        << msg;
  }
}

TEST(Settings, EvaluateTextAndAttributesAreThoseOfBefore) {
  const auto& d = evaluate::evaluate_declaration();
  EvaluateSettings s;
  s.classifier_fingerprint = "f00d";
  // leak_ratio with the stream's 6 digits, as /metrics written before.
  EXPECT_EQ(d.text(s), "classifier=f00d k=3 max_images=0 leak_ratio=0.1");
  s.leak_ratio = 1.0 / 3;
  s.k = 4;
  s.max_images = 50;
  EXPECT_EQ(d.text(s), "classifier=f00d k=4 max_images=50 leak_ratio=0.333333");
  ASSERT_EQ(d.attributes(s).size(), 1u);
  EXPECT_EQ(d.attributes(s)[0].first, "classifier_fingerprint");
  EXPECT_EQ(std::get<std::string>(d.attributes(s)[0].second), "f00d");
  const auto read = evaluate::evaluate_settings(resolve({"--evaluate.classifier=c", "--evaluate.tags=a,b"}));
  EXPECT_EQ(read.tags, (std::vector<std::string>{"a", "b"}));
}

// printf's %.17g: the spelling of reals in pretrain's recorded settings before the declaration.
std::string g17(double v) {
  char out[64];
  std::snprintf(out, sizeof out, "%.17g", v);
  return out;
}

TEST(Settings, PretrainTextIsTheRecordedTextOfBefore) {
  PretrainSettings s;
  const std::string before =
      "pretrain.init = preset:tiny\npretrain.component = both\npretrain.steps = 2000\npretrain.vae_steps = 1000\n"
      "pretrain.batch_size = 32\npretrain.lr = " +
      g17(1e-3) + "\npretrain.vae_lr = " + g17(1e-3) +
      "\npretrain.warmup_steps = 100\npretrain.weight_decay = " + g17(1e-2) +
      "\npretrain.max_grad_norm = 1\npretrain.ema_decay = " + g17(0.999) + "\npretrain.caption_dropout = " + g17(0.1) +
      "\npretrain.snr_gamma = 0\npretrain.kl_weight = " + g17(1e-6) + "\npretrain.cache_latents = true\nrun.seed = 0\n";
  EXPECT_EQ(s.output_text(), before);
  s.corpus = "captioned:n=8:abc";
  EXPECT_EQ(pretrain::pretrain_declaration().text(s), before + "corpus = captioned:n=8:abc\n");
  s.cache_latents = false;
  EXPECT_NE(s.output_text().find("\npretrain.cache_latents = false\n"), std::string::npos);
  const auto vae = pretrain::pretrain_settings(resolve({"--data.format=captioned", "--pretrain.component=vae"}));
  EXPECT_EQ(vae.component, pretrain::Component::vae);
  EXPECT_NE(vae.output_text().find("\npretrain.component = vae\n"), std::string::npos);
}

TEST(Settings, PretrainRecordedLinesAreComparedByKey) {
  const auto& d = pretrain::pretrain_declaration();
  PretrainSettings s;
  s.corpus = "c1";
  // A work folder of another corpus and component, missing a line.
  const auto diffs = d.differences("pretrain.init = preset:tiny\npretrain.component = vae\ncorpus = c0\n", d.text(s));
  ASSERT_GE(diffs.size(), 3u);
  EXPECT_EQ(diffs[0].describe(), "pretrain.component is 'vae' there, 'both' in this run");
  EXPECT_EQ(diffs[1].describe(), "pretrain.steps is absent there, '2000' in this run");
  EXPECT_EQ(diffs.back().describe(), "corpus is 'c0' there, 'c1' in this run");
  EXPECT_TRUE(d.differences(d.text(s), d.text(s)).empty());
}

TEST(Settings, ClosedSetsAreParsedOnceFromOneTable) {
  auto schema = stage_schema();
  classify::register_train_options(schema);
  EXPECT_EQ(schema.find("train.precision")->choices, (std::vector<std::string>{"fp32", "fp16", "bf16"}));
  EXPECT_EQ(*schema.find("train.precision")->default_value, "fp32");
  const auto train = [&](const std::string& precision) {
    return classify::train_options(Config::resolve(schema, {}, {"--train.precision=" + precision}), 32, 10).precision;
  };
  EXPECT_EQ(train("bf16"), classify::Precision::bf16);
  EXPECT_EQ(train("fp16"), classify::Precision::fp16);
  EXPECT_EQ(classify::kPrecisionNames.name(train("fp32")), "fp32");
  EXPECT_EQ(schema.find("sampler.timestep_spacing")->choices,
            (std::vector<std::string>{"folder", "leading", "trailing", "linspace"}));
  const auto c = diffusion::SchedulerConfig::from_json(
      R"({"beta_schedule": "squaredcos_cap_v2", "prediction_type": "v_prediction", "timestep_spacing": "trailing"})",
      "cfg.json");
  EXPECT_EQ(c.beta_schedule, diffusion::BetaSchedule::squaredcos_cap_v2);
  EXPECT_EQ(c.prediction_type, diffusion::PredictionType::v_prediction);
  EXPECT_EQ(c.timestep_spacing, diffusion::TimestepSpacing::trailing);
  EXPECT_EQ(diffusion::SchedulerConfig::from_json("{}", "cfg.json").beta_schedule, diffusion::BetaSchedule::linear);
}

TEST(Settings, OtherSettingsContinue) {
  const auto& d = inversion::embed_declaration();
  const auto base = inversion::embed_settings(resolve({}));
  const auto other = inversion::embed_settings(resolve({"--embed.checkpoint_every=3", "--embed.dtype=bf16"}));
  EXPECT_NO_THROW(d.require_same("s", d.text(base), other, ""));
  // In embedding mode the prompt decides nothing.
  const auto& g = generation::generate_declaration();
  EXPECT_NO_THROW(g.require_same("s", g.text(generation::generate_settings(resolve({}))),
                                 generation::generate_settings(resolve({"--generate.prompt=x {}"})), ""));
}

TEST(Settings, StoredTextIsParsedBackPerSetting) {
  const std::vector<std::string> names = {"mode", "prompt", "prompt_per"};
  const auto parsed = settings::parse_settings_text("mode=prompt prompt=a b=c {} prompt_per=class", names);
  ASSERT_EQ(parsed.size(), 3u);
  EXPECT_EQ(parsed[1], (std::pair<std::string, std::string>{"prompt", "a b=c {}"}));
  EXPECT_EQ(parsed[2].second, "class");
  // A mode switch names the settings only one side has.
  const auto diffs = settings::compare_settings_texts("mode=embedding uncond=group_mean",
                                                      "mode=prompt prompt_per=class", {"mode", "uncond", "prompt_per"},
                                                      {"generate.mode", "generate.uncond", "generate.prompt_per"});
  ASSERT_EQ(diffs.size(), 3u);
  EXPECT_EQ(diffs[0].describe(), "generate.mode is 'embedding' there, 'prompt' in this run");
  EXPECT_EQ(diffs[1].describe(), "generate.uncond is 'group_mean' there, absent in this run");
  EXPECT_EQ(diffs[2].describe(), "generate.prompt_per is absent there, 'class' in this run");
}

TEST(Settings, TextItCannotTakeApartIsRefusedWhole) {
  const auto& d = inversion::embed_declaration();
  try {
    d.require_same("store 's.h5', /embeddings", "written by hand", EmbedSettings{}, "Use a new store.");
    ADD_FAILURE() << "continued";
  } catch (const StoreError& e) {
    EXPECT_NE(std::string(e.what()).find("/embeddings: settings is 'written by hand' but this run has 'num_tokens=5"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace dinv
