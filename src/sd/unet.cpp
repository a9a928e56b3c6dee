#include "dinv/sd/unet.h"

#include <sstream>

#include "config_reader.h"
#include "dinv/core/error.h"

namespace dinv::sd {

using detail::ConfigReader;
using io::Json;

// ---- configuration ---------------------------------------------------------------

UNetConfig UNetConfig::from_file(const std::string& path) { return from_json(detail::read_model_json(path), path); }

namespace {

using detail::between;
using detail::field;
using detail::Field;
using detail::kMaxChannels;
using detail::kMaxKernel;
using detail::kMaxLayers;
using detail::odd;
using detail::one_of;
using F = Field<UNetConfig>;

// One value per down block: a single value for every block, or a list of one
// per block (the up path uses them reversed).
template <typename T, typename... Checks>
F per_block(const char* key, std::vector<T> UNetConfig::*member, T fallback, Checks... checks) {
  return [=](const ConfigReader& r, UNetConfig& c) {
    const size_t n = c.down_block_types.size();
    if constexpr (std::is_same_v<T, bool>)
      c.*member = r.bool_or_list(key, fallback, n);
    else
      c.*member = r.int_or_list(key, fallback, n);
    (checks(r, key, c.*member), ...);
  };
}

// mid_block_type null: no mid block.
void read_mid_block_type(const ConfigReader& r, UNetConfig& c) {
  if (r.is_null("mid_block_type")) {
    c.mid_block_type = "";
    return;
  }
  c.mid_block_type = r.value("mid_block_type", c.mid_block_type);
  one_of{{"UNetMidBlock2DCrossAttn"}}(r, "mid_block_type", c.mid_block_type);
}

void read_norm_num_groups(const ConfigReader& r, UNetConfig& c) {
  if (r.is_null("norm_num_groups"))
    r.fail("norm_num_groups", Json(), "is not supported by dinv (a number of groups is required)");
  c.norm_num_groups = r.value("norm_num_groups", c.norm_num_groups);
  between{1, kMaxChannels}(r, "norm_num_groups", c.norm_num_groups);
}

void read_time_scale_shift(const ConfigReader& r, UNetConfig& c) {
  const std::string v = r.value<std::string>("resnet_time_scale_shift", "default");
  one_of{{"default", "scale_shift"}}(r, "resnet_time_scale_shift", v);
  c.resnet_scale_shift = v == "scale_shift";
}

// The keys of diffusers' UNet2DConditionModel, in its order. Sizes are
// bounded as they are read; the shapes that combine keys are checked after.
const std::vector<F>& unet_fields() {
  static const std::vector<F> fields{
      detail::class_name<UNetConfig>("UNet2DConditionModel"),
      detail::int_or_first("sample_size", &UNetConfig::sample_size, between{1, detail::kMaxSampleSize}),
      field("in_channels", &UNetConfig::in_channels, between{1, kMaxChannels}),
      field("out_channels", &UNetConfig::out_channels, between{1, kMaxChannels}),
      field("center_input_sample", &UNetConfig::center_input_sample),
      field("flip_sin_to_cos", &UNetConfig::flip_sin_to_cos),
      field("freq_shift", &UNetConfig::freq_shift),
      field("down_block_types", &UNetConfig::down_block_types, one_of{{"CrossAttnDownBlock2D", "DownBlock2D"}},
            detail::not_empty{}, detail::max_blocks{detail::kMaxBlocks}),
      field("up_block_types", &UNetConfig::up_block_types, one_of{{"CrossAttnUpBlock2D", "UpBlock2D"}}),
      read_mid_block_type,
      field("block_out_channels", &UNetConfig::block_out_channels, between{1, kMaxChannels}),
      per_block("layers_per_block", &UNetConfig::layers_per_block, std::int64_t{2}, between{1, kMaxLayers}),
      per_block("cross_attention_dim", &UNetConfig::cross_attention_dim, std::int64_t{1280}, between{1, kMaxChannels}),
      per_block("transformer_layers_per_block", &UNetConfig::transformer_layers_per_block, std::int64_t{1},
                between{1, kMaxLayers}),
      detail::only<UNetConfig>("num_attention_heads", {}),  // diffusers itself refuses it
      // diffusers' historical naming: `attention_head_dim` is the number of heads.
      per_block("attention_head_dim", &UNetConfig::num_attention_heads, std::int64_t{8}, between{1, kMaxChannels}),
      per_block("only_cross_attention", &UNetConfig::only_cross_attention, false),
      detail::only<UNetConfig>("mid_block_only_cross_attention", {false}),
      field("downsample_padding", &UNetConfig::downsample_padding, between{0, kMaxKernel}),
      field("mid_block_scale_factor", &UNetConfig::mid_block_scale_factor),
      detail::ignored<UNetConfig>("dropout", /*number=*/true),  // inference only: dropout is the identity
      detail::activation("act_fn", &UNetConfig::act),
      read_norm_num_groups,
      field("norm_eps", &UNetConfig::norm_eps),
      detail::only<UNetConfig>("reverse_transformer_layers_per_block", {}),
      detail::only<UNetConfig>("encoder_hid_dim", {}),
      detail::only<UNetConfig>("encoder_hid_dim_type", {}),
      detail::only<UNetConfig>("dual_cross_attention", {false}),
      field("use_linear_projection", &UNetConfig::use_linear_projection),
      detail::only<UNetConfig>("class_embed_type", {}),
      detail::only<UNetConfig>("addition_embed_type", {}),
      detail::only<UNetConfig>("addition_time_embed_dim", {}),
      detail::only<UNetConfig>("num_class_embeds", {}),
      detail::only<UNetConfig>("projection_class_embeddings_input_dim", {}),
      detail::only<UNetConfig>("class_embeddings_concat", {false}),
      detail::only<UNetConfig>("time_cond_proj_dim", {}),
      detail::only<UNetConfig>("cross_attention_norm", {}),
      detail::only<UNetConfig>("attention_type", {"default"}),
      detail::only<UNetConfig>("time_embedding_type", {"positional"}),
      detail::ignored<UNetConfig>("addition_embed_type_num_heads"),  // only used with addition_embed_type
      detail::ignored<UNetConfig>("resnet_out_scale_factor"),        // not used by the supported block types
      field("upcast_attention", &UNetConfig::upcast_attention),
      read_time_scale_shift,
      field("resnet_skip_time_act", &UNetConfig::resnet_skip_time_act),
      field("time_embedding_dim", &UNetConfig::time_embed_dim),  // bounded once resolved
      detail::activation("time_embedding_act_fn", &UNetConfig::time_embedding_act),
      detail::activation("timestep_post_act", &UNetConfig::timestep_post_act),
      field("conv_in_kernel", &UNetConfig::conv_in_kernel, odd{}, between{1, kMaxKernel}),
      field("conv_out_kernel", &UNetConfig::conv_out_kernel, odd{}, between{1, kMaxKernel}),
  };
  return fields;
}

// What the architecture needs of keys taken together.
void check_shapes(const ConfigReader& r, UNetConfig& c) {
  const size_t n = c.down_block_types.size();
  const auto one_per_block = [&](const char* key, size_t count) {
    if (count != n)
      r.fail(key, r.raw(key), "must have as many entries as down_block_types (" + std::to_string(n) + ")");
  };
  one_per_block("up_block_types", c.up_block_types.size());
  one_per_block("block_out_channels", c.block_out_channels.size());
  if (c.time_embed_dim == 0) c.time_embed_dim = 4 * c.block_out_channels[0];
  r.bounded("time_embedding_dim", c.time_embed_dim, 1, 4 * kMaxChannels);
  for (size_t i = 0; i < n; ++i) {
    const auto ch = c.block_out_channels[i];
    if (ch % c.norm_num_groups != 0)
      r.fail("block_out_channels", r.raw("block_out_channels"),
             "must be divisible by norm_num_groups (" + std::to_string(c.norm_num_groups) + ")");
    if (ch % c.num_attention_heads[i] != 0)
      r.fail("attention_head_dim", r.raw("attention_head_dim", Json(8)),
             "(number of heads) must divide block_out_channels[" + std::to_string(i) + "] = " + std::to_string(ch));
  }
}

}  // namespace

UNetConfig UNetConfig::from_json(const Json& json, const std::string& where) {
  return detail::read_component(json, where, unet_fields(), check_shapes);
}

// ---- model ------------------------------------------------------------------------

namespace {

// What every block of level `level` shares, from the config; the caller sets
// the channels in and the sampler.
UNetBlockOptions level_options(const UNetConfig& c, size_t level) {
  UNetBlockOptions o;
  o.out_channels = c.block_out_channels[level];
  o.num_layers = c.layers_per_block[level];
  o.resnet.temb_channels = c.time_embed_dim;
  o.resnet.groups = c.norm_num_groups;
  o.resnet.eps = c.norm_eps;
  o.resnet.act = c.act;
  o.resnet.scale_shift = c.resnet_scale_shift;
  o.resnet.skip_time_act = c.resnet_skip_time_act;
  o.transformer.heads = c.num_attention_heads[level];
  o.transformer.num_layers = c.transformer_layers_per_block[level];
  o.transformer.cross_attention_dim = c.cross_attention_dim[level];
  o.transformer.norm_groups = c.norm_num_groups;
  o.transformer.use_linear_projection = c.use_linear_projection;
  o.transformer.only_cross_attention = c.only_cross_attention[level];
  o.transformer.upcast_attention = c.upcast_attention;
  return o;
}

// diffusers' get_down_block / get_up_block for the types the config reader accepts.
std::shared_ptr<UNetDownBlockImpl> down_block(const std::string& type, const UNetBlockOptions& o,
                                              const at::TensorOptions& options) {
  if (type == "CrossAttnDownBlock2D") return CrossAttnDownBlock2D(o, options).ptr();
  return DownBlock2D(o, options).ptr();
}

std::shared_ptr<UNetUpBlockImpl> up_block(const std::string& type, const UNetBlockOptions& o,
                                          const at::TensorOptions& options) {
  if (type == "CrossAttnUpBlock2D") return CrossAttnUpBlock2D(o, options).ptr();
  return UpBlock2D(o, options).ptr();
}

}  // namespace

UNet2DConditionModelImpl::UNet2DConditionModelImpl(const UNetConfig& c, const at::TensorOptions& options) : config_(c) {
  const auto& ch = c.block_out_channels;
  const size_t n = ch.size();
  conv_in = register_module("conv_in",
                            Conv2d(c.in_channels, ch[0], c.conv_in_kernel, 1, (c.conv_in_kernel - 1) / 2, options));
  time_embedding = register_module("time_embedding",
                                   TimestepEmbedding(ch[0], c.time_embed_dim, c.act, c.timestep_post_act, options));

  torch::nn::ModuleList downs;
  for (size_t i = 0; i < n; ++i) {
    UNetBlockOptions o = level_options(c, i);
    o.in_channels = ch[i == 0 ? 0 : i - 1];
    o.add_sampler = i + 1 < n;
    o.downsample_padding = c.downsample_padding;
    down_blocks_.push_back(down_block(c.down_block_types[i], o, options));
    downs->push_back(down_blocks_.back());
  }
  register_module("down_blocks", downs);

  if (!c.mid_block_type.empty()) {
    UNetBlockOptions o = level_options(c, n - 1);
    o.in_channels = ch.back();
    o.resnet.output_scale_factor = c.mid_block_scale_factor;
    o.transformer.only_cross_attention = false;
    mid_block = register_module("mid_block", UNetMidBlock2DCrossAttn(o, options));
  }

  // Up block i mirrors level n - 1 - i of the down path, with one layer more.
  torch::nn::ModuleList ups;
  for (size_t i = 0; i < n; ++i) {
    const size_t level = n - 1 - i;
    UNetBlockOptions o = level_options(c, level);
    o.num_layers = c.layers_per_block[level] + 1;
    o.prev_output_channel = i == 0 ? ch.back() : ch[level + 1];
    o.in_channels = ch[level == 0 ? 0 : level - 1];
    o.add_sampler = i + 1 < n;
    num_upsamplers_ += o.add_sampler;
    up_blocks_.push_back(up_block(c.up_block_types[i], o, options));
    ups->push_back(up_blocks_.back());
  }
  register_module("up_blocks", ups);

  conv_norm_out = register_module("conv_norm_out", GroupNorm(c.norm_num_groups, ch[0], c.norm_eps, options));
  conv_out = register_module("conv_out",
                             Conv2d(ch[0], c.out_channels, c.conv_out_kernel, 1, (c.conv_out_kernel - 1) / 2, options));
}

at::Tensor UNet2DConditionModelImpl::forward(const at::Tensor& sample_in, const at::Tensor& timestep,
                                             const at::Tensor& context) {
  const auto& c = config_;
  if (sample_in.dim() != 4 || sample_in.size(1) != c.in_channels)
    throw ModelError("UNet: sample must be [B, " + std::to_string(c.in_channels) + ", h, w], got " +
                     c10::str(sample_in.sizes()));
  const std::int64_t B = sample_in.size(0);
  if (context.dim() != 3 || context.size(0) != B)
    throw ModelError("UNet: encoder_hidden_states must be [B=" + std::to_string(B) + ", T, D], got " +
                     c10::str(context.sizes()));
  for (size_t i = 0; i < c.cross_attention_dim.size(); ++i)
    if (context.size(2) != c.cross_attention_dim[i])
      throw ModelError("UNet: encoder_hidden_states has D = " + std::to_string(context.size(2)) +
                       " but the model's cross_attention_dim is " + std::to_string(c.cross_attention_dim[i]));
  at::Tensor t = timestep;
  if (t.dim() == 0) t = t.unsqueeze(0);
  if (t.dim() != 1 || (t.size(0) != 1 && t.size(0) != B))
    throw ModelError("UNet: timestep must be a scalar, [1] or [B=" + std::to_string(B) + "], got " +
                     c10::str(timestep.sizes()));
  t = t.to(sample_in.device()).expand({B});

  // The context in the model's dtype (an fp32 learned embedding with an fp16 model).
  const auto dtype = conv_in->weight.scalar_type();
  at::Tensor ctx = context.scalar_type() == dtype ? context : context.to(dtype);
  at::Tensor sample = sample_in.scalar_type() == dtype ? sample_in : sample_in.to(dtype);
  if (c.center_input_sample) sample = sample * 2.0 - 1.0;
  if (channels_last_) sample = sample.contiguous(at::MemoryFormat::ChannelsLast);

  // [B] -> [B, C0] sinusoids -> [B, time_embed_dim]
  at::Tensor emb = timestep_embedding(t, c.block_out_channels[0], c.flip_sin_to_cos, c.freq_shift).to(dtype);
  emb = time_embedding->forward(emb);
  if (c.time_embedding_act) emb = activate(emb, *c.time_embedding_act);

  // Sizes that are not multiples of the overall up factor: each upsampler
  // goes to the size of the matching skip connection.
  const std::int64_t factor = std::int64_t(1) << num_upsamplers_;
  const bool to_skip_size = sample.size(2) % factor != 0 || sample.size(3) % factor != 0;

  sample = conv_in->forward(sample);  // [B, in_channels, h, w] -> [B, C0, h, w]
  std::vector<at::Tensor> skips{sample};
  for (const auto& b : down_blocks_) sample = b->forward(sample, emb, ctx, skips);  // -> [B, C_last, h/f, w/f]
  if (mid_block) sample = mid_block->forward(sample, emb, ctx);                     // [B, C_last, h/f, w/f]
  for (const auto& b : up_blocks_) sample = b->forward(sample, skips, emb, ctx, to_skip_size);  // -> [B, C0, h, w]
  sample = activate(conv_norm_out->forward(sample), c.act);
  return conv_out->forward(sample).contiguous();  // [B, C0, h, w] -> [B, out_channels, h, w]
}

void UNet2DConditionModelImpl::set_channels_last(bool on) {
  channels_last_ = on;
  set_memory_format(*this, on ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous);
}

std::string UNet2DConditionModelImpl::describe() const {
  const auto& c = config_;
  std::ostringstream s;
  s << "UNet2DConditionModel: in " << c.in_channels << " -> out " << c.out_channels << " channels, blocks";
  for (size_t i = 0; i < c.down_block_types.size(); ++i)
    s << " " << c.down_block_types[i] << "(" << c.block_out_channels[i] << ", " << c.layers_per_block[i] << " layers, "
      << c.num_attention_heads[i] << " heads)";
  s << ", mid " << (c.mid_block_type.empty() ? "none" : c.mid_block_type) << ", cross_attention_dim "
    << c.cross_attention_dim[0] << (c.use_linear_projection ? ", linear projection" : "")
    << (c.upcast_attention ? ", upcast attention" : "") << ", sample_size " << c.sample_size;
  return s.str();
}

}  // namespace dinv::sd
