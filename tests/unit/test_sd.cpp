#include <gtest/gtest.h>

#include <map>
#include <set>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include "dinv/core/error.h"
#include "dinv/io/hash.h"
#include "dinv/sd/layers.h"
#include "dinv/sd/loader.h"
#include "dinv/sd/presets.h"
#include "dinv/sd/unet.h"
#include "dinv/sd/unet_blocks.h"
#include "dinv/sd/vae.h"

namespace dinv::sd {
namespace {

TEST(Hash, Sha256Vectors) {
  EXPECT_EQ(io::sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(io::sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(io::sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  // Incremental updates of odd sizes give the same digest.
  std::string big(100000, 'x');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 31 % 251);
  io::Sha256 s;
  for (size_t i = 0; i < big.size();) {
    const size_t n = std::min<size_t>(1 + i % 97, big.size() - i);
    s.update(big.data() + i, n);
    i += n;
  }
  EXPECT_EQ(s.hex_digest(), io::sha256_hex(big));
}

TEST(Hash, Xxh64Vectors) {
  // Reference values from the xxhash package.
  EXPECT_EQ(io::xxh64("", 0, 0), 0xef46db3751d8e999ULL);
  EXPECT_EQ(io::xxh64("", 0, 7), 0x95f0626f6f0a4409ULL);
  EXPECT_EQ(io::xxh64("abc", 3, 0), 0x44bc2cf5ad770999ULL);
  EXPECT_EQ(io::xxh64("abc", 3, 7), 0x9e755206156676d7ULL);
  std::string s;
  for (int r = 0; r < 3; ++r)
    for (int i = 0; i < 256; ++i) s += static_cast<char>(i);
  s += "xyz";
  EXPECT_EQ(io::xxh64(s.data(), s.size(), 0), 0xe921a1b45bd779f8ULL);
  EXPECT_EQ(io::xxh64(s.data(), s.size(), 7), 0xb63555d1bf05377fULL);
}

TEST(Hash, WeightHashChunksAndLength) {
  std::vector<unsigned char> a(9 << 20);
  for (size_t i = 0; i < a.size(); ++i) a[i] = static_cast<unsigned char>(i * 7);
  auto h = [](const void* p, size_t n) {
    io::Sha256 s;
    io::weight_hash_update(s, p, n);
    return s.hex_digest();
  };
  const std::string full = h(a.data(), a.size());
  EXPECT_EQ(full, h(a.data(), a.size()));
  a[5 << 20] ^= 1;  // a change in the second chunk
  EXPECT_NE(full, h(a.data(), a.size()));
  EXPECT_NE(h(a.data(), 10), h(a.data(), 11));
}

UNetConfig tiny_unet() { return UNetConfig::from_json(preset_unet_config("tiny"), "tiny"); }

TEST(UNet, NamesAreTheDiffusersNames) {
  UNet2DConditionModel m(tiny_unet(), at::TensorOptions().device(at::kMeta));
  std::set<std::string> names;
  for (const auto& p : m->named_parameters()) names.insert(p.key());
  for (const char* n :
       {"conv_in.weight", "time_embedding.linear_1.weight", "time_embedding.linear_2.bias",
        "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight",
        "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight",
        "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0.bias",
        "down_blocks.0.attentions.0.transformer_blocks.0.ff.net.0.proj.weight",
        "down_blocks.0.attentions.0.transformer_blocks.0.ff.net.2.weight", "down_blocks.0.attentions.0.proj_in.weight",
        "down_blocks.0.downsamplers.0.conv.weight", "down_blocks.1.resnets.0.conv_shortcut.weight",
        "mid_block.attentions.0.norm.weight", "mid_block.resnets.1.time_emb_proj.weight",
        "up_blocks.0.upsamplers.0.conv.weight", "up_blocks.1.attentions.1.transformer_blocks.0.norm3.bias",
        "conv_norm_out.weight", "conv_out.bias"})
    EXPECT_TRUE(names.count(n)) << n;
  EXPECT_FALSE(names.count("down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.bias"));
}

// The config's block types become the diffusers classes of those names.
TEST(UNet, BlocksAreTheDiffusersClasses) {
  auto j = preset_unet_config("tiny");
  j["down_block_types"] = {"DownBlock2D", "CrossAttnDownBlock2D"};
  j["up_block_types"] = {"CrossAttnUpBlock2D", "UpBlock2D"};
  UNet2DConditionModel m(UNetConfig::from_json(j, "u"), at::TensorOptions().device(at::kMeta));
  std::map<std::string, std::shared_ptr<torch::nn::Module>> children;
  for (const auto& c : m->named_children()) children[c.key()] = c.value();
  const auto& downs = children.at("down_blocks")->children();
  const auto& ups = children.at("up_blocks")->children();
  ASSERT_EQ(downs.size(), 2u);
  ASSERT_EQ(ups.size(), 2u);
  EXPECT_NE(std::dynamic_pointer_cast<DownBlock2DImpl>(downs[0]), nullptr);
  EXPECT_NE(std::dynamic_pointer_cast<CrossAttnDownBlock2DImpl>(downs[1]), nullptr);
  EXPECT_NE(std::dynamic_pointer_cast<UNetMidBlock2DCrossAttnImpl>(children.at("mid_block")), nullptr);
  EXPECT_NE(std::dynamic_pointer_cast<CrossAttnUpBlock2DImpl>(ups[0]), nullptr);
  EXPECT_NE(std::dynamic_pointer_cast<UpBlock2DImpl>(ups[1]), nullptr);
  // A DownBlock2D has no attentions; the last up block no upsampler.
  for (const auto& p : m->named_parameters()) {
    EXPECT_EQ(p.key().rfind("down_blocks.0.attentions", 0), std::string::npos) << p.key();
    EXPECT_EQ(p.key().rfind("up_blocks.1.upsamplers", 0), std::string::npos) << p.key();
  }
}

TEST(Vae, EncoderAndDecoderAreTheDiffusersClasses) {
  AutoencoderKL m(VaeConfig::from_json(preset_vae_config("tiny"), "v"), at::TensorOptions().device(at::kMeta));
  std::map<std::string, std::shared_ptr<torch::nn::Module>> children;
  for (const auto& c : m->named_children()) children[c.key()] = c.value();
  EXPECT_NE(std::dynamic_pointer_cast<EncoderImpl>(children.at("encoder")), nullptr);
  EXPECT_NE(std::dynamic_pointer_cast<DecoderImpl>(children.at("decoder")), nullptr);
  std::set<std::string> names;
  for (const auto& p : m->named_parameters()) names.insert(p.key());
  for (const char* n :
       {"encoder.down_blocks.0.resnets.0.norm1.weight", "encoder.down_blocks.0.downsamplers.0.conv.weight",
        "encoder.mid_block.attentions.0.group_norm.weight", "encoder.mid_block.resnets.1.conv2.bias",
        "decoder.mid_block.attentions.0.to_out.0.weight", "decoder.up_blocks.0.upsamplers.0.conv.weight",
        "decoder.up_blocks.1.resnets.1.conv1.weight", "decoder.conv_out.bias", "quant_conv.weight"})
    EXPECT_TRUE(names.count(n)) << n;
}

TEST(UNet, GradientsFlowOnlyIntoTheConditioning) {
  UNet2DConditionModel m(tiny_unet());
  init_random(*m, 3);
  freeze(*m);
  m->eval();
  auto g = at::make_generator<at::CPUGeneratorImpl>(1);
  auto x = at::randn({2, 4, 8, 8}, g);
  auto ctx = at::randn({2, 5, 32}, g).set_requires_grad(true);
  auto out = m->forward(x, at::tensor({10, 700}), ctx);
  EXPECT_EQ(out.sizes(), x.sizes());
  out.square().sum().backward();
  ASSERT_TRUE(ctx.grad().defined());
  EXPECT_TRUE(ctx.grad().isfinite().all().item<bool>());
  EXPECT_GT(ctx.grad().abs().sum().item<double>(), 0.0);
  for (const auto& p : m->parameters()) EXPECT_FALSE(p.grad().defined());

  // Finite differences along a random direction agree with autograd.
  auto dir = at::randn(ctx.sizes(), g);
  const double eps = 1e-3;
  at::Tensor base = ctx.detach();
  auto f = [&](const at::Tensor& c) {
    at::NoGradGuard ng;
    return m->forward(x, at::tensor({10, 700}), c).square().sum().item<double>();
  };
  const double fd =
      (f(base.to(at::kDouble).add(dir, eps).to(at::kFloat)) - f(base.to(at::kDouble).add(dir, -eps).to(at::kFloat))) /
      (2 * eps);
  const double ad = (ctx.grad() * dir).sum().item<double>();
  EXPECT_NEAR(fd, ad, 2e-2 * std::abs(ad) + 1e-3);
}

TEST(UNet, ScalarAndVectorTimestepsAgree) {
  UNet2DConditionModel m(tiny_unet());
  init_random(*m, 4);
  at::InferenceMode im;
  auto x = at::randn({3, 4, 8, 8});
  auto c = at::randn({3, 5, 32});
  auto a = m->forward(x, at::scalar_tensor(321, at::kLong), c);
  auto b = m->forward(x, at::full({3}, 321.0), c);
  EXPECT_TRUE(at::allclose(a, b));
}

TEST(Vae, SlicedMatchesBatched) {
  AutoencoderKL m(VaeConfig::from_json(preset_vae_config("tiny"), "tiny"));
  init_random(*m, 5);
  at::InferenceMode im;
  auto img = at::rand({5, 3, 16, 16}) * 2 - 1;
  auto p1 = m->encode(img), p2 = m->encode(img, 2);
  EXPECT_TRUE(at::allclose(p1.mean, p2.mean, 1e-5, 1e-6));
  EXPECT_TRUE(at::allclose(p1.std, p2.std, 1e-5, 1e-6));
  auto z = at::randn({5, 4, 8, 8});
  auto d1 = m->decode(z), d2 = m->decode(z, 2);
  EXPECT_EQ(d1.sizes(), (std::vector<std::int64_t>{5, 3, 16, 16}));
  EXPECT_LT((d1 - d2).abs().max().item<double>(), 1e-4 * d1.abs().max().item<double>())
      << (d1 - d2).abs().max().item<double>() << " " << d1.abs().max().item<double>();
  // Scaling round trip, and the posterior sample draws from the generator.
  EXPECT_TRUE(at::allclose(m->unscale_latents(m->scale_latents(z)), z));
  auto g1 = at::make_generator<at::CPUGeneratorImpl>(9), g2 = at::make_generator<at::CPUGeneratorImpl>(9);
  EXPECT_TRUE(at::equal(p1.sample(g1), p1.sample(g2)));
  // logvar is clamped as in diffusers.
  DiagonalGaussian d(at::cat({at::zeros({1, 4, 2, 2}), at::full({1, 4, 2, 2}, 100.0)}, 1));
  EXPECT_FLOAT_EQ(d.logvar.max().item<float>(), 20.0f);
}

TEST(Models, ChannelsLastMatchesNchw) {
  UNet2DConditionModel u(tiny_unet());
  init_random(*u, 8);
  AutoencoderKL v(VaeConfig::from_json(preset_vae_config("tiny"), "tiny"));
  init_random(*v, 9);
  at::InferenceMode im;
  auto x = at::randn({2, 4, 8, 8}), c = at::randn({2, 5, 32}), img = at::rand({2, 3, 16, 16});
  auto a = u->forward(x, at::tensor({1, 999}), c);
  auto e1 = v->encode(img).mean;
  auto d1 = v->decode(x);
  u->set_channels_last(true);
  v->set_channels_last(true);
  auto b = u->forward(x, at::tensor({1, 999}), c);
  EXPECT_TRUE(b.is_contiguous());
  EXPECT_LT((a - b).norm().item<double>(), 1e-5 * a.norm().item<double>());
  EXPECT_LT((e1 - v->encode(img).mean).norm().item<double>(), 1e-5 * e1.norm().item<double>());
  EXPECT_LT((d1 - v->decode(x)).norm().item<double>(), 1e-5 * d1.norm().item<double>());
}

TEST(Models, ToDeviceAndDtype) {
  UNet2DConditionModel m(tiny_unet());
  init_random(*m, 6);
  m->to(at::kBFloat16);
  at::InferenceMode im;
  auto out = m->forward(at::randn({1, 4, 8, 8}), at::scalar_tensor(5), at::randn({1, 3, 32}));
  EXPECT_EQ(out.scalar_type(), at::kBFloat16);
}

// Activation names are parsed once, into the config; an unknown one names the key.
TEST(Config, ActivationsAreParsedOnce) {
  auto j = preset_unet_config("tiny");
  EXPECT_FALSE(UNetConfig::from_json(j, "u").timestep_post_act.has_value());
  j["act_fn"] = "swish";
  j["timestep_post_act"] = "gelu";
  j["time_embedding_act_fn"] = "mish";
  const UNetConfig c = UNetConfig::from_json(j, "u");
  EXPECT_EQ(c.act, Activation::silu);
  EXPECT_EQ(c.timestep_post_act, Activation::gelu);
  EXPECT_EQ(c.time_embedding_act, Activation::mish);
  j["timestep_post_act"] = "tanh";
  try {
    UNetConfig::from_json(j, "x/unet/config.json");
    FAIL();
  } catch (const ModelError& e) {
    EXPECT_STREQ(e.what(),
                 "x/unet/config.json: key 'timestep_post_act' value \"tanh\" is not supported by dinv (supported: "
                 "null, \"silu\", \"swish\", \"gelu\", \"mish\", \"relu\")");
  }
}

// Absent keys keep diffusers' defaults; scalars for per-block keys expand to every block.
TEST(Config, DefaultsAndPerBlockValues) {
  const UNetConfig d = UNetConfig::from_json(io::Json::object(), "u");
  EXPECT_EQ(d.block_out_channels, (std::vector<std::int64_t>{320, 640, 1280, 1280}));
  EXPECT_EQ(d.layers_per_block, (std::vector<std::int64_t>{2, 2, 2, 2}));
  EXPECT_EQ(d.num_attention_heads, (std::vector<std::int64_t>{8, 8, 8, 8}));
  EXPECT_EQ(d.time_embed_dim, 1280);
  EXPECT_EQ(d.mid_block_type, "UNetMidBlock2DCrossAttn");
  EXPECT_FALSE(d.resnet_scale_shift);
  auto j = preset_unet_config("tiny");
  j["attention_head_dim"] = {2, 4};
  j["only_cross_attention"] = {true, false};
  j["resnet_time_scale_shift"] = "scale_shift";
  const UNetConfig c = UNetConfig::from_json(j, "u");
  EXPECT_EQ(c.num_attention_heads, (std::vector<std::int64_t>{2, 4}));
  EXPECT_EQ(c.only_cross_attention, (std::vector<bool>{true, false}));
  EXPECT_TRUE(c.resnet_scale_shift);
  j["attention_head_dim"] = {2, 4, 4};
  EXPECT_THROW(UNetConfig::from_json(j, "u"), ModelError);
  const VaeConfig v = VaeConfig::from_json(io::Json::object(), "v");
  EXPECT_EQ(v.block_out_channels, (std::vector<std::int64_t>{64}));
  EXPECT_FALSE(v.shift_factor.has_value());
  EXPECT_DOUBLE_EQ(VaeConfig::from_json(io::Json{{"shift_factor", 0.5}}, "v").shift_factor.value(), 0.5);
}

TEST(Config, ErrorsNameKeyAndValue) {
  auto j = preset_unet_config("tiny");
  j["down_block_types"][0] = "AttnDownBlock2D";
  try {
    UNetConfig::from_json(j, "x/unet/config.json");
    FAIL();
  } catch (const ModelError& e) {
    EXPECT_STREQ(e.what(),
                 "x/unet/config.json: key 'down_block_types' value \"AttnDownBlock2D\" is not supported by dinv "
                 "(supported: \"CrossAttnDownBlock2D\", \"DownBlock2D\")");
  }
  j = preset_unet_config("tiny");
  j["resnet_time_scale_shift"] = "spatial";
  EXPECT_THROW(UNetConfig::from_json(j, "u"), ModelError);
  j = preset_unet_config("tiny");
  j["mid_block_type"] = nullptr;  // no mid block: supported
  UNet2DConditionModel m(UNetConfig::from_json(j, "u"), at::TensorOptions().device(at::kMeta));
  for (const auto& p : m->named_parameters()) EXPECT_EQ(p.key().rfind("mid_block", 0), std::string::npos);
}

}  // namespace
}  // namespace dinv::sd
