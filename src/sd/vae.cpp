#include "dinv/sd/vae.h"

#include <sstream>

#include "config_reader.h"
#include "dinv/core/error.h"

namespace dinv::sd {

using detail::ConfigReader;
using io::Json;

VaeConfig VaeConfig::from_file(const std::string& path) { return from_json(detail::read_model_json(path), path); }

namespace {

using detail::between;
using detail::field;
using detail::kMaxChannels;
using detail::one_of;
using F = detail::Field<VaeConfig>;

// The keys of diffusers' AutoencoderKL, in its order; sizes bounded as they are read.
const std::vector<F>& vae_fields() {
  static const std::vector<F> fields{
      detail::class_name<VaeConfig>("AutoencoderKL"),
      field("in_channels", &VaeConfig::in_channels, between{1, kMaxChannels}),
      field("out_channels", &VaeConfig::out_channels, between{1, kMaxChannels}),
      field("latent_channels", &VaeConfig::latent_channels, between{1, kMaxChannels}),
      field("block_out_channels", &VaeConfig::block_out_channels, detail::not_empty{},
            detail::max_blocks{detail::kMaxBlocks}, between{1, kMaxChannels}),
      field("down_block_types", &VaeConfig::down_block_types, one_of{{"DownEncoderBlock2D"}}),
      field("up_block_types", &VaeConfig::up_block_types, one_of{{"UpDecoderBlock2D"}}),
      field("layers_per_block", &VaeConfig::layers_per_block, between{1, detail::kMaxLayers}),
      detail::activation("act_fn", &VaeConfig::act),
      field("norm_num_groups", &VaeConfig::norm_num_groups, between{1, kMaxChannels}),
      detail::int_or_first("sample_size", &VaeConfig::sample_size, between{1, detail::kMaxSampleSize}),
      field("scaling_factor", &VaeConfig::scaling_factor),
      field("shift_factor", &VaeConfig::shift_factor),
      // Per-channel latent statistics are a pipeline matter (SDXL-style); SD has none.
      detail::only<VaeConfig>("latents_mean", {}),
      detail::only<VaeConfig>("latents_std", {}),
      field("force_upcast", &VaeConfig::force_upcast),
      field("use_quant_conv", &VaeConfig::use_quant_conv),
      field("use_post_quant_conv", &VaeConfig::use_post_quant_conv),
      field("mid_block_add_attention", &VaeConfig::mid_block_add_attention),
      detail::only<VaeConfig>("norm_type", {"group"}),
  };
  return fields;
}

// What the architecture needs of keys taken together.
void check_shapes(const ConfigReader& r, VaeConfig& c) {
  const size_t n = c.block_out_channels.size();
  for (const auto& [key, count] :
       {std::pair{"down_block_types", c.down_block_types.size()}, std::pair{"up_block_types", c.up_block_types.size()}})
    if (count != n) r.fail(key, r.raw(key), "must have one entry per block_out_channels (" + std::to_string(n) + ")");
  for (auto ch : c.block_out_channels)
    if (ch % c.norm_num_groups != 0)
      r.fail("block_out_channels", r.raw("block_out_channels"),
             "must be positive and divisible by norm_num_groups (" + std::to_string(c.norm_num_groups) + ")");
}

}  // namespace

VaeConfig VaeConfig::from_json(const Json& json, const std::string& where) {
  return detail::read_component(json, where, vae_fields(), check_shapes);
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

namespace {

// The VAE's resnets: no time embedding, eps 1e-6.
ResnetOptions resnet_options(const VaeConfig& c) {
  ResnetOptions r;
  r.groups = c.norm_num_groups;
  r.eps = 1e-6;
  r.act = c.act;
  return r;
}

// The blocks of one level: `in` -> `out` channels in `layers` resnets, a sampler unless the last level.
UNetBlockOptions level_options(const VaeConfig& c, std::int64_t in, std::int64_t out, std::int64_t layers, bool last) {
  UNetBlockOptions o;
  o.in_channels = in;
  o.out_channels = out;
  o.num_layers = layers;
  o.resnet = resnet_options(c);
  o.add_sampler = !last;
  o.downsample_padding = 0;
  return o;
}

// conv_norm_out, the activation, conv_out: both coders end so.
at::Tensor output_head(const at::Tensor& h, const GroupNorm& norm, Activation act, const Conv2d& conv) {
  return conv->forward(activate(norm->forward(h), act));
}

}  // namespace

EncoderImpl::EncoderImpl(const VaeConfig& c, const at::TensorOptions& o) : act_(c.act) {
  const auto& ch = c.block_out_channels;
  const size_t n = ch.size();
  conv_in = register_module("conv_in", Conv2d(c.in_channels, ch[0], 3, 1, 1, o));
  torch::nn::ModuleList blocks;
  for (size_t i = 0; i < n; ++i) {
    down_blocks_.push_back(
        DownEncoderBlock2D(level_options(c, ch[i == 0 ? 0 : i - 1], ch[i], c.layers_per_block, i + 1 == n), o));
    blocks->push_back(down_blocks_.back());
  }
  register_module("down_blocks", blocks);
  mid_block = register_module("mid_block", UNetMidBlock2D(ch.back(), resnet_options(c), c.mid_block_add_attention, o));
  conv_norm_out = register_module("conv_norm_out", GroupNorm(c.norm_num_groups, ch.back(), 1e-6, o));
  conv_out = register_module("conv_out", Conv2d(ch.back(), 2 * c.latent_channels, 3, 1, 1, o));
}

at::Tensor EncoderImpl::forward(const at::Tensor& x) const {
  at::Tensor h = conv_in->forward(x);                    // [B, in_channels, H, W] -> [B, C0, H, W]
  for (const auto& b : down_blocks_) h = b->forward(h);  // -> [B, C_last, H/f, W/f]
  h = mid_block->forward(h);                             // [B, C_last, H/f, W/f]
  return output_head(h, conv_norm_out, act_, conv_out);  // -> [B, 2 * latent_channels, H/f, W/f]
}

DecoderImpl::DecoderImpl(const VaeConfig& c, const at::TensorOptions& o) : act_(c.act) {
  const auto& ch = c.block_out_channels;
  const size_t n = ch.size();
  conv_in = register_module("conv_in", Conv2d(c.latent_channels, ch.back(), 3, 1, 1, o));
  mid_block = register_module("mid_block", UNetMidBlock2D(ch.back(), resnet_options(c), c.mid_block_add_attention, o));
  torch::nn::ModuleList blocks;
  for (size_t i = 0; i < n; ++i) {
    const std::int64_t from_below = ch[i == 0 ? n - 1 : n - i];
    up_blocks_.push_back(
        UpDecoderBlock2D(level_options(c, from_below, ch[n - 1 - i], c.layers_per_block + 1, i + 1 == n), o));
    blocks->push_back(up_blocks_.back());
  }
  register_module("up_blocks", blocks);
  conv_norm_out = register_module("conv_norm_out", GroupNorm(c.norm_num_groups, ch[0], 1e-6, o));
  conv_out = register_module("conv_out", Conv2d(ch[0], c.out_channels, 3, 1, 1, o));
}

at::Tensor DecoderImpl::forward(const at::Tensor& z) const {
  at::Tensor h = conv_in->forward(z);                    // [B, latent_channels, h, w] -> [B, C_last, h, w]
  h = mid_block->forward(h);                             // [B, C_last, h, w]
  for (const auto& b : up_blocks_) h = b->forward(h);    // -> [B, C0, h*f, w*f]
  return output_head(h, conv_norm_out, act_, conv_out);  // -> [B, out_channels, h*f, w*f]
}

AutoencoderKLImpl::AutoencoderKLImpl(const VaeConfig& c, const at::TensorOptions& o) : config_(c) {
  encoder = register_module("encoder", Encoder(c, o));
  decoder = register_module("decoder", Decoder(c, o));
  if (c.use_quant_conv)
    quant_conv = register_module("quant_conv", Conv2d(2 * c.latent_channels, 2 * c.latent_channels, 1, 1, 0, o));
  if (c.use_post_quant_conv)
    post_quant_conv = register_module("post_quant_conv", Conv2d(c.latent_channels, c.latent_channels, 1, 1, 0, o));
}

at::Tensor AutoencoderKLImpl::encode_moments(const at::Tensor& input) {
  const at::Tensor x = channels_last_ ? input.contiguous(at::MemoryFormat::ChannelsLast) : input;
  at::Tensor h = encoder->forward(x);
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
  const auto dtype = encoder->dtype();
  at::Tensor x = images.scalar_type() == dtype ? images : images.to(dtype);
  if (slice_size <= 0 || x.size(0) <= slice_size) return DiagonalGaussian(encode_moments(x));
  std::vector<at::Tensor> parts;
  for (const auto& s : x.split(slice_size)) parts.push_back(encode_moments(s));
  return DiagonalGaussian(at::cat(parts));
}

at::Tensor AutoencoderKLImpl::decode_one(const at::Tensor& input) {
  const at::Tensor z = channels_last_ ? input.contiguous(at::MemoryFormat::ChannelsLast) : input;
  return decoder->forward(post_quant_conv ? post_quant_conv->forward(z) : z).contiguous();
}

at::Tensor AutoencoderKLImpl::decode(const at::Tensor& latents, std::int64_t slice_size) {
  if (latents.dim() != 4 || latents.size(1) != config_.latent_channels)
    throw ModelError("VAE decode: latents must be [B, " + std::to_string(config_.latent_channels) + ", h, w], got " +
                     c10::str(latents.sizes()));
  const auto dtype = encoder->dtype();
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
