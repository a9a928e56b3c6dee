#include "dinv/sd/vae.h"

#include <sstream>

#include "config_reader.h"
#include "dinv/core/error.h"

namespace dinv::sd {

using detail::ConfigReader;
using io::Json;

VaeConfig VaeConfig::from_file(const std::string& path) { return from_json(detail::read_model_json(path), path); }

VaeConfig VaeConfig::from_json(const Json& json, const std::string& where) {
  ConfigReader r(json, where);
  VaeConfig c;
  c.json = json;
  if (r.has("_class_name")) {
    const std::string cls = r.s("_class_name", "");
    if (cls != "AutoencoderKL")
      r.fail("_class_name", Json(cls), "is not supported by dinv (supported: \"AutoencoderKL\")");
  }
  c.in_channels = r.i("in_channels", 3);
  c.out_channels = r.i("out_channels", 3);
  c.latent_channels = r.i("latent_channels", 4);
  c.block_out_channels = r.int_list("block_out_channels", {64});
  const size_t n = c.block_out_channels.size();
  if (n == 0) r.fail("block_out_channels", Json::array(), "must not be empty");
  const auto downs = r.string_list("down_block_types", {"DownEncoderBlock2D"});
  const auto ups = r.string_list("up_block_types", {"UpDecoderBlock2D"});
  for (const auto& t : downs)
    if (t != "DownEncoderBlock2D")
      r.fail("down_block_types", Json(t), "is not supported by dinv (supported: \"DownEncoderBlock2D\")");
  for (const auto& t : ups)
    if (t != "UpDecoderBlock2D")
      r.fail("up_block_types", Json(t), "is not supported by dinv (supported: \"UpDecoderBlock2D\")");
  if (downs.size() != n)
    r.fail("down_block_types", json.at("down_block_types"),
           "must have one entry per block_out_channels (" + std::to_string(n) + ")");
  if (ups.size() != n)
    r.fail("up_block_types", json.at("up_block_types"),
           "must have one entry per block_out_channels (" + std::to_string(n) + ")");
  c.layers_per_block = r.i("layers_per_block", 1);
  if (c.layers_per_block < 1) r.fail("layers_per_block", Json(c.layers_per_block), "must be at least 1");
  c.act_fn = r.s("act_fn", "silu");
  if (auto a = activation_from_name(c.act_fn))
    c.act = *a;
  else
    r.fail("act_fn", Json(c.act_fn),
           "is not supported by dinv (supported: \"silu\", \"swish\", \"gelu\", \"mish\", \"relu\")");
  c.norm_num_groups = r.i("norm_num_groups", 32);
  // Sizes first (each within its cap, divisors positive).
  using detail::kMaxChannels;
  if (n > static_cast<size_t>(detail::kMaxBlocks))
    r.fail("block_out_channels", json.at("block_out_channels"),
           "has more than " + std::to_string(detail::kMaxBlocks) + " blocks");
  r.bounded("in_channels", c.in_channels, 1, kMaxChannels);
  r.bounded("out_channels", c.out_channels, 1, kMaxChannels);
  r.bounded("latent_channels", c.latent_channels, 1, kMaxChannels);
  r.bounded("block_out_channels", c.block_out_channels, 1, kMaxChannels);
  r.bounded("norm_num_groups", c.norm_num_groups, 1, kMaxChannels);
  r.bounded("layers_per_block", c.layers_per_block, 1, detail::kMaxLayers);
  for (auto ch : c.block_out_channels)
    if (ch <= 0 || ch % c.norm_num_groups != 0)
      r.fail("block_out_channels", json.at("block_out_channels"),
             "must be positive and divisible by norm_num_groups (" + std::to_string(c.norm_num_groups) + ")");
  if (r.has("sample_size")) {
    const Json& v = json.at("sample_size");
    c.sample_size =
        v.is_array() && !v.empty() && v[0].is_number_integer() ? v[0].get<std::int64_t>() : r.i("sample_size", 32);
  }
  r.bounded("sample_size", c.sample_size, 1, detail::kMaxSampleSize);
  c.scaling_factor = r.d("scaling_factor", 0.18215);
  if (r.has("shift_factor")) c.shift_factor = r.d("shift_factor", 0.0);
  // Per-channel latent statistics are a pipeline matter (SDXL-style); SD has none.
  r.require("latents_mean", {});
  r.require("latents_std", {});
  c.force_upcast = r.b("force_upcast", true);
  c.use_quant_conv = r.b("use_quant_conv", true);
  c.use_post_quant_conv = r.b("use_post_quant_conv", true);
  c.mid_block_add_attention = r.b("mid_block_add_attention", true);
  r.require("norm_type", {"group"});
  r.warn_unused();
  return c;
}

// ---- posterior --------------------------------------------------------------------

DiagonalGaussian::DiagonalGaussian(const at::Tensor& moments) {
  auto parts = moments.chunk(2, 1);
  mean = parts[0];
  logvar = at::clamp(parts[1], -30.0, 20.0);
  std = at::exp(logvar * 0.5);
}

at::Tensor DiagonalGaussian::sample(std::optional<at::Generator> generator) const {
  at::Tensor noise;
  if (generator && generator->device().is_cpu() && !mean.device().is_cpu())
    noise = at::randn(mean.sizes(), generator, mean.options().device(at::kCPU)).to(mean.device());
  else
    noise = at::randn(mean.sizes(), generator, mean.options());
  return mean + std * noise;
}

// ---- encoder / decoder ---------------------------------------------------------------

// Encoder or Decoder: conv_in, down_blocks or (mid_block, up_blocks),
// conv_norm_out, conv_out; the blocks are ModuleLists as in diffusers.
struct AutoencoderKLImpl::Coder : torch::nn::Module {
  struct Level {
    std::vector<ResnetBlock2D> resnets;
    Downsample2D down{nullptr};
    Upsample2D up{nullptr};
  };
  bool is_encoder;
  Activation act;
  Conv2d conv_in{nullptr}, conv_out{nullptr};
  GroupNorm conv_norm_out{nullptr};
  std::vector<Level> levels;
  std::vector<ResnetBlock2D> mid_resnets;
  Attention mid_attention{nullptr};

  Coder(bool encoder, const VaeConfig& c, const at::TensorOptions& o) : is_encoder(encoder), act(c.act) {
    const auto& ch = c.block_out_channels;
    const size_t n = ch.size();
    auto ropts = [&](std::int64_t in, std::int64_t out) {
      ResnetOptions r;
      r.in_channels = in;
      r.out_channels = out;
      r.groups = c.norm_num_groups;
      r.eps = 1e-6;
      r.act = c.act;
      return r;
    };
    torch::nn::ModuleList blocks;
    if (encoder) {
      conv_in = register_module("conv_in", Conv2d(c.in_channels, ch[0], 3, 1, 1, o));
      std::int64_t out = ch[0];
      for (size_t i = 0; i < n; ++i) {
        const std::int64_t in = out;
        out = ch[i];
        Level L;
        auto block = std::make_shared<torch::nn::Module>("DownEncoderBlock2D");
        torch::nn::ModuleList rs;
        for (std::int64_t l = 0; l < c.layers_per_block; ++l) {
          L.resnets.push_back(ResnetBlock2D(ropts(l == 0 ? in : out, out), o));
          rs->push_back(L.resnets.back());
        }
        block->register_module("resnets", rs);
        if (i + 1 < n) {
          L.down = Downsample2D(out, 0, o);
          torch::nn::ModuleList ds;
          ds->push_back(L.down);
          block->register_module("downsamplers", ds);
        }
        levels.push_back(L);
        blocks->push_back(block);
      }
      register_module("down_blocks", blocks);
    } else {
      conv_in = register_module("conv_in", Conv2d(c.latent_channels, ch.back(), 3, 1, 1, o));
    }
    // mid block
    {
      auto mid = std::make_shared<torch::nn::Module>("UNetMidBlock2D");
      torch::nn::ModuleList rs, as;
      mid_resnets.push_back(ResnetBlock2D(ropts(ch.back(), ch.back()), o));
      if (c.mid_block_add_attention) {
        AttentionOptions a;
        a.query_dim = ch.back();
        a.heads = 1;
        a.dim_head = ch.back();
        a.bias = true;
        a.norm_groups = c.norm_num_groups;
        a.norm_eps = 1e-6;
        a.residual_connection = true;
        mid_attention = Attention(a, o);
        as->push_back(mid_attention);
        mid->register_module("attentions", as);
      }
      mid_resnets.push_back(ResnetBlock2D(ropts(ch.back(), ch.back()), o));
      for (auto& r : mid_resnets) rs->push_back(r);
      mid->register_module("resnets", rs);
      register_module("mid_block", mid);
    }
    if (!encoder) {
      std::int64_t out = ch.back();
      for (size_t i = 0; i < n; ++i) {
        const std::int64_t prev = out;
        out = ch[n - 1 - i];
        Level L;
        auto block = std::make_shared<torch::nn::Module>("UpDecoderBlock2D");
        torch::nn::ModuleList rs;
        for (std::int64_t l = 0; l < c.layers_per_block + 1; ++l) {
          L.resnets.push_back(ResnetBlock2D(ropts(l == 0 ? prev : out, out), o));
          rs->push_back(L.resnets.back());
        }
        block->register_module("resnets", rs);
        if (i + 1 < n) {
          L.up = Upsample2D(out, o);
          torch::nn::ModuleList us;
          us->push_back(L.up);
          block->register_module("upsamplers", us);
        }
        levels.push_back(L);
        blocks->push_back(block);
      }
      register_module("up_blocks", blocks);
    }
    const std::int64_t last = encoder ? ch.back() : ch[0];
    conv_norm_out = register_module("conv_norm_out", GroupNorm(c.norm_num_groups, last, 1e-6, o));
    conv_out = register_module("conv_out", Conv2d(last, encoder ? 2 * c.latent_channels : c.out_channels, 3, 1, 1, o));
  }

  at::Tensor mid_forward(at::Tensor h) const {
    h = mid_resnets[0]->forward(h, {});
    if (mid_attention) h = mid_attention->forward(h);
    return mid_resnets[1]->forward(h, {});
  }

  at::Tensor forward(const at::Tensor& x) const {
    at::Tensor h = conv_in->forward(x);
    if (!is_encoder) h = mid_forward(h);
    for (const auto& L : levels) {
      for (const auto& r : L.resnets) h = r->forward(h, {});
      if (L.down) h = L.down->forward(h);
      if (L.up) h = L.up->forward(h);
    }
    if (is_encoder) h = mid_forward(h);
    h = activate(conv_norm_out->forward(h), act);
    return conv_out->forward(h);
  }
};

AutoencoderKLImpl::AutoencoderKLImpl(const VaeConfig& c, const at::TensorOptions& o) : config_(c) {
  encoder_ = register_module("encoder", std::make_shared<Coder>(true, c, o));
  decoder_ = register_module("decoder", std::make_shared<Coder>(false, c, o));
  if (c.use_quant_conv)
    quant_conv = register_module("quant_conv", Conv2d(2 * c.latent_channels, 2 * c.latent_channels, 1, 1, 0, o));
  if (c.use_post_quant_conv)
    post_quant_conv = register_module("post_quant_conv", Conv2d(c.latent_channels, c.latent_channels, 1, 1, 0, o));
}

at::Tensor AutoencoderKLImpl::encode_moments(const at::Tensor& input) {
  const at::Tensor x = channels_last_ ? input.contiguous(at::MemoryFormat::ChannelsLast) : input;
  at::Tensor h = encoder_->forward(x);
  return (quant_conv ? quant_conv->forward(h) : h).contiguous();
}

void AutoencoderKLImpl::set_channels_last(bool on) {
  channels_last_ = on;
  set_memory_format(*this, on ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous);
}

DiagonalGaussian AutoencoderKLImpl::encode(const at::Tensor& images, std::int64_t slice_size) {
  if (images.dim() != 4 || images.size(1) != config_.in_channels)
    throw ModelError("VAE encode: images must be [B, " + std::to_string(config_.in_channels) + ", H, W], got " +
                     c10::str(images.sizes()));
  const auto dtype = conv_dtype();
  at::Tensor x = images.scalar_type() == dtype ? images : images.to(dtype);
  if (slice_size <= 0 || x.size(0) <= slice_size) return DiagonalGaussian(encode_moments(x));
  std::vector<at::Tensor> parts;
  for (const auto& s : x.split(slice_size)) parts.push_back(encode_moments(s));
  return DiagonalGaussian(at::cat(parts));
}

at::Tensor AutoencoderKLImpl::decode_one(const at::Tensor& input) {
  const at::Tensor z = channels_last_ ? input.contiguous(at::MemoryFormat::ChannelsLast) : input;
  return decoder_->forward(post_quant_conv ? post_quant_conv->forward(z) : z).contiguous();
}

at::Tensor AutoencoderKLImpl::decode(const at::Tensor& latents, std::int64_t slice_size) {
  if (latents.dim() != 4 || latents.size(1) != config_.latent_channels)
    throw ModelError("VAE decode: latents must be [B, " + std::to_string(config_.latent_channels) + ", h, w], got " +
                     c10::str(latents.sizes()));
  const auto dtype = conv_dtype();
  at::Tensor z = latents.scalar_type() == dtype ? latents : latents.to(dtype);
  if (slice_size <= 0 || z.size(0) <= slice_size) return decode_one(z);
  std::vector<at::Tensor> parts;
  for (const auto& s : z.split(slice_size)) parts.push_back(decode_one(s));
  return at::cat(parts);
}

at::Tensor AutoencoderKLImpl::scale_latents(const at::Tensor& z) const {
  return (config_.shift_factor ? z - *config_.shift_factor : z) * config_.scaling_factor;
}

at::Tensor AutoencoderKLImpl::unscale_latents(const at::Tensor& z) const {
  at::Tensor out = z / config_.scaling_factor;
  return config_.shift_factor ? out + *config_.shift_factor : out;
}

at::ScalarType AutoencoderKLImpl::conv_dtype() const { return encoder_->conv_in->weight.scalar_type(); }

std::string AutoencoderKLImpl::describe() const {
  const auto& c = config_;
  std::ostringstream s;
  s << "AutoencoderKL: " << c.in_channels << " -> " << c.latent_channels << " latent channels, levels (";
  for (size_t i = 0; i < c.block_out_channels.size(); ++i) s << (i ? ", " : "") << c.block_out_channels[i];
  s << "), " << c.layers_per_block << " layers per block, downsampling x" << c.downsampling_factor()
    << ", scaling_factor " << c.scaling_factor;
  if (c.shift_factor) s << ", shift_factor " << *c.shift_factor;
  return s.str();
}

}  // namespace dinv::sd
