#include "dinv/sd/unet.h"

#include <sstream>

#include "config_reader.h"
#include "dinv/core/error.h"

namespace dinv::sd {

using detail::ConfigReader;
using io::Json;

// ---- configuration ---------------------------------------------------------------

UNetConfig UNetConfig::from_file(const std::string& path) { return from_json(detail::read_model_json(path), path); }

UNetConfig UNetConfig::from_json(const Json& json, const std::string& where) {
  ConfigReader r(json, where);
  UNetConfig c;
  c.json = json;
  if (r.has("_class_name")) {
    const std::string cls = r.s("_class_name", "");
    if (cls != "UNet2DConditionModel")
      r.fail("_class_name", Json(cls), "is not supported by dinv (supported: \"UNet2DConditionModel\")");
  }
  if (r.has("sample_size")) {
    const Json& v = json.at("sample_size");
    c.sample_size =
        v.is_array() && !v.empty() && v[0].is_number_integer() ? v[0].get<std::int64_t>() : r.i("sample_size", 64);
  }
  c.in_channels = r.i("in_channels", 4);
  c.out_channels = r.i("out_channels", 4);
  c.center_input_sample = r.b("center_input_sample", false);
  c.flip_sin_to_cos = r.b("flip_sin_to_cos", true);
  c.freq_shift = r.d("freq_shift", 0);
  c.down_block_types = r.string_list(
      "down_block_types", {"CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"});
  c.up_block_types =
      r.string_list("up_block_types", {"UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"});
  for (const auto& t : c.down_block_types)
    if (t != "CrossAttnDownBlock2D" && t != "DownBlock2D")
      r.fail("down_block_types", Json(t),
             "is not supported by dinv (supported: \"CrossAttnDownBlock2D\", \"DownBlock2D\")");
  for (const auto& t : c.up_block_types)
    if (t != "CrossAttnUpBlock2D" && t != "UpBlock2D")
      r.fail("up_block_types", Json(t), "is not supported by dinv (supported: \"CrossAttnUpBlock2D\", \"UpBlock2D\")");
  if (json.contains("mid_block_type") && json.at("mid_block_type").is_null()) {
    r.has("mid_block_type");
    c.mid_block_type = "";
  } else {
    c.mid_block_type = r.choice("mid_block_type", "UNetMidBlock2DCrossAttn", {"UNetMidBlock2DCrossAttn"});
  }
  const size_t n = c.down_block_types.size();
  if (n == 0) r.fail("down_block_types", json.value("down_block_types", Json()), "must not be empty");
  if (n > static_cast<size_t>(detail::kMaxBlocks))
    r.fail("down_block_types", json.at("down_block_types"),
           "has more than " + std::to_string(detail::kMaxBlocks) + " blocks");
  if (c.up_block_types.size() != n)
    r.fail("up_block_types", json.at("up_block_types"),
           "must have as many entries as down_block_types (" + std::to_string(n) + ")");
  c.block_out_channels = r.int_list("block_out_channels", {320, 640, 1280, 1280});
  if (c.block_out_channels.size() != n)
    r.fail("block_out_channels", json.at("block_out_channels"),
           "must have as many entries as down_block_types (" + std::to_string(n) + ")");
  r.bounded("block_out_channels", c.block_out_channels, 1, detail::kMaxChannels);
  c.layers_per_block = r.int_or_list("layers_per_block", 2, n);
  c.cross_attention_dim = r.int_or_list("cross_attention_dim", 1280, n);
  c.transformer_layers_per_block = r.int_or_list("transformer_layers_per_block", 1, n);
  r.require("num_attention_heads", {});  // diffusers itself refuses it
  // diffusers' historical naming: `attention_head_dim` is the number of heads.
  c.num_attention_heads = r.int_or_list("attention_head_dim", 8, n);
  c.only_cross_attention = r.bool_or_list("only_cross_attention", false, n);
  r.require("mid_block_only_cross_attention", {false});
  c.downsample_padding = r.i("downsample_padding", 1);
  c.mid_block_scale_factor = r.d("mid_block_scale_factor", 1.0);
  r.d("dropout", 0.0);  // inference only: dropout is the identity
  c.act_fn = r.s("act_fn", "silu");
  if (auto a = activation_from_name(c.act_fn))
    c.act = *a;
  else
    r.fail("act_fn", Json(c.act_fn),
           "is not supported by dinv (supported: \"silu\", \"swish\", \"gelu\", \"mish\", \"relu\")");
  if (json.contains("norm_num_groups") && json.at("norm_num_groups").is_null())
    r.fail("norm_num_groups", Json(), "is not supported by dinv (a number of groups is required)");
  c.norm_num_groups = r.i("norm_num_groups", 32);
  c.norm_eps = r.d("norm_eps", 1e-5);
  r.require("reverse_transformer_layers_per_block", {});
  r.require("encoder_hid_dim", {});
  r.require("encoder_hid_dim_type", {});
  r.require("dual_cross_attention", {false});
  c.use_linear_projection = r.b("use_linear_projection", false);
  r.require("class_embed_type", {});
  r.require("addition_embed_type", {});
  r.require("addition_time_embed_dim", {});
  r.require("num_class_embeds", {});
  r.require("projection_class_embeddings_input_dim", {});
  r.require("class_embeddings_concat", {false});
  r.require("time_cond_proj_dim", {});
  r.require("cross_attention_norm", {});
  r.require("attention_type", {"default"});
  r.require("time_embedding_type", {"positional"});
  r.has("addition_embed_type_num_heads");  // only used with addition_embed_type
  r.has("resnet_out_scale_factor");        // not used by the supported block types
  c.upcast_attention = r.b("upcast_attention", false);
  c.resnet_scale_shift = r.choice("resnet_time_scale_shift", "default", {"default", "scale_shift"}) == "scale_shift";
  c.resnet_skip_time_act = r.b("resnet_skip_time_act", false);
  c.time_embed_dim = r.i("time_embedding_dim", 0);
  if (c.time_embed_dim == 0) c.time_embed_dim = 4 * c.block_out_channels[0];
  c.time_embedding_act_fn = r.s("time_embedding_act_fn", "");
  c.timestep_post_act = r.s("timestep_post_act", "");
  for (const char* k : {"time_embedding_act_fn", "timestep_post_act"}) {
    const std::string v = r.s(k, "");
    if (!v.empty() && !activation_from_name(v))
      r.fail(k, Json(v), "is not supported by dinv (supported: null, \"silu\", \"gelu\", \"mish\", \"relu\")");
  }
  c.conv_in_kernel = r.i("conv_in_kernel", 3);
  c.conv_out_kernel = r.i("conv_out_kernel", 3);
  if (c.conv_in_kernel % 2 == 0 || c.conv_in_kernel < 1)
    r.fail("conv_in_kernel", Json(c.conv_in_kernel), "must be a positive odd number");
  if (c.conv_out_kernel % 2 == 0 || c.conv_out_kernel < 1)
    r.fail("conv_out_kernel", Json(c.conv_out_kernel), "must be a positive odd number");

  // Sizes first (each within its cap, divisors positive), then the shapes
  // that the architecture needs.
  using detail::kMaxChannels;
  r.bounded("in_channels", c.in_channels, 1, kMaxChannels);
  r.bounded("out_channels", c.out_channels, 1, kMaxChannels);
  r.bounded("block_out_channels", c.block_out_channels, 1, kMaxChannels);
  r.bounded("norm_num_groups", c.norm_num_groups, 1, kMaxChannels);
  r.bounded("cross_attention_dim", c.cross_attention_dim, 1, kMaxChannels);
  r.bounded("attention_head_dim", c.num_attention_heads, 1, kMaxChannels);
  r.bounded("layers_per_block", c.layers_per_block, 1, detail::kMaxLayers);
  r.bounded("transformer_layers_per_block", c.transformer_layers_per_block, 1, detail::kMaxLayers);
  r.bounded("time_embedding_dim", c.time_embed_dim, 1, 4 * kMaxChannels);
  r.bounded("sample_size", c.sample_size, 1, detail::kMaxSampleSize);
  r.bounded("downsample_padding", c.downsample_padding, 0, detail::kMaxKernel);
  r.bounded("conv_in_kernel", c.conv_in_kernel, 1, detail::kMaxKernel);
  r.bounded("conv_out_kernel", c.conv_out_kernel, 1, detail::kMaxKernel);
  for (size_t i = 0; i < n; ++i) {
    const auto ch = c.block_out_channels[i];
    if (ch <= 0) r.fail("block_out_channels", json.at("block_out_channels"), "must be positive");
    if (ch % c.norm_num_groups != 0)
      r.fail("block_out_channels", json.at("block_out_channels"),
             "must be divisible by norm_num_groups (" + std::to_string(c.norm_num_groups) + ")");
    if (c.num_attention_heads[i] <= 0 || ch % c.num_attention_heads[i] != 0)
      r.fail("attention_head_dim", json.value("attention_head_dim", Json(8)),
             "(number of heads) must divide block_out_channels[" + std::to_string(i) + "] = " + std::to_string(ch));
    if (c.layers_per_block[i] < 1) r.fail("layers_per_block", json.at("layers_per_block"), "must be at least 1");
    if (c.transformer_layers_per_block[i] < 1)
      r.fail("transformer_layers_per_block", json.at("transformer_layers_per_block"), "must be at least 1");
  }
  if (c.in_channels < 1) r.fail("in_channels", Json(c.in_channels), "must be positive");
  if (c.out_channels < 1) r.fail("out_channels", Json(c.out_channels), "must be positive");
  r.warn_unused();
  return c;
}

// ---- blocks ----------------------------------------------------------------------

namespace {

class TimestepEmbeddingImpl : public torch::nn::Module {
 public:
  TimestepEmbeddingImpl(std::int64_t in, std::int64_t dim, const at::TensorOptions& o) {
    linear_1 = register_module("linear_1", Linear(in, dim, true, o));
    linear_2 = register_module("linear_2", Linear(dim, dim, true, o));
  }
  Linear linear_1{nullptr}, linear_2{nullptr};
};
TORCH_MODULE(TimestepEmbedding);

}  // namespace

// One down, mid or up block: ModuleLists `resnets`, `attentions` and
// `downsamplers` / `upsamplers`, as in diffusers.
struct UNet2DConditionModelImpl::Block : torch::nn::Module {
  enum Kind { down, mid, up } kind;
  bool cross = false;
  torch::nn::ModuleList resnets_list, attentions_list, samplers_list;
  std::vector<ResnetBlock2D> resnets;
  std::vector<Transformer2DModel> attentions;
  Downsample2D downsample{nullptr};
  Upsample2D upsample{nullptr};

  explicit Block(Kind k) : kind(k) {}
  void finish() {
    for (auto& r : resnets) resnets_list->push_back(r);
    resnets_list = register_module("resnets", resnets_list);
    if (!attentions.empty()) {
      for (auto& a : attentions) attentions_list->push_back(a);
      attentions_list = register_module("attentions", attentions_list);
    }
    if (downsample) {
      samplers_list->push_back(downsample);
      samplers_list = register_module("downsamplers", samplers_list);
    }
    if (upsample) {
      samplers_list->push_back(upsample);
      samplers_list = register_module("upsamplers", samplers_list);
    }
  }
};

UNet2DConditionModelImpl::UNet2DConditionModelImpl(const UNetConfig& c, const at::TensorOptions& options) : config_(c) {
  const auto& ch = c.block_out_channels;
  const size_t n = ch.size();
  conv_in = register_module("conv_in",
                            Conv2d(c.in_channels, ch[0], c.conv_in_kernel, 1, (c.conv_in_kernel - 1) / 2, options));
  auto te = TimestepEmbedding(ch[0], c.time_embed_dim, options);
  time_linear_1 = te->linear_1;
  time_linear_2 = te->linear_2;
  register_module("time_embedding", te);

  auto resnet_opts = [&](std::int64_t in, std::int64_t out) {
    ResnetOptions r;
    r.in_channels = in;
    r.out_channels = out;
    r.temb_channels = c.time_embed_dim;
    r.groups = c.norm_num_groups;
    r.eps = c.norm_eps;
    r.act = c.act;
    r.scale_shift = c.resnet_scale_shift;
    r.skip_time_act = c.resnet_skip_time_act;
    return r;
  };
  auto transformer_opts = [&](std::int64_t channels, std::int64_t heads, std::int64_t layers, std::int64_t cross_dim,
                              bool only_cross) {
    TransformerOptions t;
    t.heads = heads;
    t.dim_head = channels / heads;
    t.in_channels = channels;
    t.num_layers = layers;
    t.cross_attention_dim = cross_dim;
    t.norm_groups = c.norm_num_groups;
    t.use_linear_projection = c.use_linear_projection;
    t.only_cross_attention = only_cross;
    t.upcast_attention = c.upcast_attention;
    return t;
  };

  // down
  std::int64_t out_ch = ch[0];
  for (size_t i = 0; i < n; ++i) {
    const std::int64_t in_ch = out_ch;
    out_ch = ch[i];
    auto b = std::make_shared<Block>(Block::down);
    b->cross = c.down_block_types[i] == "CrossAttnDownBlock2D";
    for (std::int64_t l = 0; l < c.layers_per_block[i]; ++l) {
      b->resnets.push_back(ResnetBlock2D(resnet_opts(l == 0 ? in_ch : out_ch, out_ch), options));
      if (b->cross)
        b->attentions.push_back(
            Transformer2DModel(transformer_opts(out_ch, c.num_attention_heads[i], c.transformer_layers_per_block[i],
                                                c.cross_attention_dim[i], c.only_cross_attention[i]),
                               options));
    }
    if (i + 1 < n) b->downsample = Downsample2D(out_ch, c.downsample_padding, options);
    b->finish();
    downs_.push_back(b);
    down_blocks->push_back(b);
  }
  down_blocks = register_module("down_blocks", down_blocks);

  // mid
  if (!c.mid_block_type.empty()) {
    mid_ = std::make_shared<Block>(Block::mid);
    mid_->cross = true;
    auto r = resnet_opts(ch.back(), ch.back());
    r.output_scale_factor = c.mid_block_scale_factor;
    mid_->resnets.push_back(ResnetBlock2D(r, options));
    mid_->attentions.push_back(
        Transformer2DModel(transformer_opts(ch.back(), c.num_attention_heads.back(),
                                            c.transformer_layers_per_block.back(), c.cross_attention_dim.back(), false),
                           options));
    mid_->resnets.push_back(ResnetBlock2D(r, options));
    mid_->finish();
    mid_block = register_module("mid_block", std::static_pointer_cast<torch::nn::Module>(mid_));
  }

  // up
  out_ch = ch.back();
  for (size_t i = 0; i < n; ++i) {
    const size_t ri = n - 1 - i;  // index into the down-path lists
    const std::int64_t prev_out = out_ch;
    out_ch = ch[ri];
    const std::int64_t in_ch = ch[ri == 0 ? 0 : ri - 1];
    auto b = std::make_shared<Block>(Block::up);
    b->cross = c.up_block_types[i] == "CrossAttnUpBlock2D";
    const std::int64_t layers = c.layers_per_block[ri] + 1;
    for (std::int64_t l = 0; l < layers; ++l) {
      const std::int64_t skip = l == layers - 1 ? in_ch : out_ch;
      const std::int64_t res_in = l == 0 ? prev_out : out_ch;
      b->resnets.push_back(ResnetBlock2D(resnet_opts(res_in + skip, out_ch), options));
      if (b->cross)
        b->attentions.push_back(
            Transformer2DModel(transformer_opts(out_ch, c.num_attention_heads[ri], c.transformer_layers_per_block[ri],
                                                c.cross_attention_dim[ri], c.only_cross_attention[ri]),
                               options));
    }
    if (i + 1 < n) {
      b->upsample = Upsample2D(out_ch, options);
      ++num_upsamplers_;
    }
    b->finish();
    ups_.push_back(b);
    up_blocks->push_back(b);
  }
  up_blocks = register_module("up_blocks", up_blocks);

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

  at::Tensor emb = timestep_embedding(t, c.block_out_channels[0], c.flip_sin_to_cos, c.freq_shift).to(dtype);
  emb = time_linear_2->forward(activate(time_linear_1->forward(emb), c.act));
  if (!c.timestep_post_act.empty()) emb = activate(emb, *activation_from_name(c.timestep_post_act));
  if (!c.time_embedding_act_fn.empty()) emb = activate(emb, *activation_from_name(c.time_embedding_act_fn));

  // Sizes that are not multiples of the overall up factor: each upsampler
  // goes to the size of the matching skip connection.
  const std::int64_t factor = std::int64_t(1) << num_upsamplers_;
  const bool forward_upsample_size = sample.size(2) % factor != 0 || sample.size(3) % factor != 0;

  sample = conv_in->forward(sample);
  std::vector<at::Tensor> res{sample};
  for (const auto& b : downs_) {
    for (size_t l = 0; l < b->resnets.size(); ++l) {
      sample = b->resnets[l]->forward(sample, emb);
      if (b->cross) sample = b->attentions[l]->forward(sample, ctx);
      res.push_back(sample);
    }
    if (b->downsample) {
      sample = b->downsample->forward(sample);
      res.push_back(sample);
    }
  }
  if (mid_) {
    sample = mid_->resnets[0]->forward(sample, emb);
    sample = mid_->attentions[0]->forward(sample, ctx);
    sample = mid_->resnets[1]->forward(sample, emb);
  }
  for (const auto& b : ups_) {
    for (size_t l = 0; l < b->resnets.size(); ++l) {
      at::Tensor skip = res.back();
      res.pop_back();
      sample = at::cat({sample, skip}, 1);
      sample = b->resnets[l]->forward(sample, emb);
      if (b->cross) sample = b->attentions[l]->forward(sample, ctx);
    }
    if (b->upsample) {
      if (forward_upsample_size)
        sample = b->upsample->forward(sample, res.back().sizes().slice(2));
      else
        sample = b->upsample->forward(sample);
    }
  }
  sample = activate(conv_norm_out->forward(sample), c.act);
  return conv_out->forward(sample).contiguous();
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
