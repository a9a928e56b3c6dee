#include "dinv/sd/layers.h"

#include <cmath>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/grad_mode.h>

namespace dinv::sd {

std::optional<Activation> activation_from_name(const std::string& name) {
  if (name == "silu" || name == "swish") return Activation::silu;
  if (name == "gelu") return Activation::gelu;
  if (name == "mish") return Activation::mish;
  if (name == "relu") return Activation::relu;
  return std::nullopt;
}

std::string activation_names() { return "\"silu\", \"swish\", \"gelu\", \"mish\", \"relu\""; }

at::Tensor activate(const at::Tensor& x, Activation act) {
  switch (act) {
    case Activation::silu:
      return at::silu(x);
    case Activation::gelu:
      return at::gelu(x);
    case Activation::mish:
      return at::mish(x);
    case Activation::relu:
      return at::relu(x);
  }
  return x;
}

namespace {
// In-place activation when no gradient is recorded (saves an allocation per
// layer at inference); out of place otherwise.
at::Tensor activate_tmp(at::Tensor x, Activation act) {
  if (at::GradMode::is_enabled() || act != Activation::silu) return activate(x, act);
  return at::silu_(x);
}

void uniform_fan_in(at::Tensor& t, std::int64_t fan_in, at::Generator& gen) {
  const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
  at::NoGradGuard ng;
  t.uniform_(-bound, bound, gen);
}

void norm_init(at::Tensor& w, at::Tensor& b, at::Generator& gen) {
  at::NoGradGuard ng;
  w.uniform_(0.9, 1.1, gen);
  b.uniform_(-0.1, 0.1, gen);
}
}  // namespace

// ---- primitive layers ------------------------------------------------------

LinearImpl::LinearImpl(std::int64_t in, std::int64_t out, bool has_bias, const at::TensorOptions& options)
    : in_features(in), out_features(out) {
  weight = register_parameter("weight", at::empty({out, in}, options));
  if (has_bias) bias = register_parameter("bias", at::empty({out}, options));
}
at::Tensor LinearImpl::forward(const at::Tensor& x) const { return at::linear(x, weight, bias); }
void LinearImpl::init_random(at::Generator& gen) {
  uniform_fan_in(weight, in_features, gen);
  if (bias.defined()) uniform_fan_in(bias, in_features, gen);
}

Conv2dImpl::Conv2dImpl(std::int64_t in, std::int64_t out, std::int64_t k, std::int64_t s, std::int64_t p,
                       const at::TensorOptions& options, bool has_bias)
    : in_channels(in), out_channels(out), kernel(k), stride(s), padding(p) {
  weight = register_parameter("weight", at::empty({out, in, k, k}, options));
  if (has_bias) bias = register_parameter("bias", at::empty({out}, options));
}
at::Tensor Conv2dImpl::forward(const at::Tensor& x) const {
  return at::conv2d(x, weight, bias, {stride, stride}, {padding, padding});
}
void Conv2dImpl::init_random(at::Generator& gen) {
  uniform_fan_in(weight, in_channels * kernel * kernel, gen);
  if (bias.defined()) uniform_fan_in(bias, in_channels * kernel * kernel, gen);
}

GroupNormImpl::GroupNormImpl(std::int64_t g, std::int64_t c, double e, const at::TensorOptions& options)
    : groups(g), channels(c), eps(e) {
  weight = register_parameter("weight", at::empty({c}, options));
  bias = register_parameter("bias", at::empty({c}, options));
}
at::Tensor GroupNormImpl::forward(const at::Tensor& x) const { return at::group_norm(x, groups, weight, bias, eps); }
void GroupNormImpl::init_random(at::Generator& gen) { norm_init(weight, bias, gen); }

LayerNormImpl::LayerNormImpl(std::int64_t d, double e, const at::TensorOptions& options) : dim(d), eps(e) {
  weight = register_parameter("weight", at::empty({d}, options));
  bias = register_parameter("bias", at::empty({d}, options));
}
at::Tensor LayerNormImpl::forward(const at::Tensor& x) const { return at::layer_norm(x, {dim}, weight, bias, eps); }
void LayerNormImpl::init_random(at::Generator& gen) { norm_init(weight, bias, gen); }

void init_random(torch::nn::Module& module, std::uint64_t seed) {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  // Parameters may live on another device: initialise on the CPU, then copy.
  auto apply = [&](auto* layer) {
    std::vector<at::Tensor*> ps{&layer->weight};
    if (layer->bias.defined()) ps.push_back(&layer->bias);
    std::vector<at::Tensor> saved;
    for (auto* p : ps) {
      saved.push_back(*p);
      *p = at::empty(p->sizes(), p->options().device(at::kCPU).dtype(at::kFloat));
    }
    layer->init_random(gen);
    at::NoGradGuard ng;
    for (size_t i = 0; i < ps.size(); ++i) {
      saved[i].copy_(*ps[i]);
      *ps[i] = saved[i];
    }
  };
  for (const auto& m : module.modules(/*include_self=*/true)) {
    if (auto* l = dynamic_cast<LinearImpl*>(m.get()))
      apply(l);
    else if (auto* c = dynamic_cast<Conv2dImpl*>(m.get()))
      apply(c);
    else if (auto* g = dynamic_cast<GroupNormImpl*>(m.get()))
      apply(g);
    else if (auto* n = dynamic_cast<LayerNormImpl*>(m.get()))
      apply(n);
  }
}

void freeze(torch::nn::Module& module) {
  for (auto& p : module.parameters()) p.set_requires_grad(false);
}

void set_memory_format(torch::nn::Module& module, at::MemoryFormat format) {
  at::NoGradGuard ng;
  for (auto& p : module.parameters())
    if (p.dim() == 4 && !p.is_contiguous(format)) p.set_data(p.contiguous(format));
}

// ---- ResnetBlock2D ---------------------------------------------------------

ResnetBlock2DImpl::ResnetBlock2DImpl(const ResnetOptions& o, const at::TensorOptions& options) : o_(o) {
  const std::int64_t groups_out = o.groups_out ? o.groups_out : o.groups;
  norm1 = register_module("norm1", GroupNorm(o.groups, o.in_channels, o.eps, options));
  conv1 = register_module("conv1", Conv2d(o.in_channels, o.out_channels, 3, 1, 1, options));
  if (o.temb_channels > 0)
    time_emb_proj = register_module(
        "time_emb_proj", Linear(o.temb_channels, o.scale_shift ? 2 * o.out_channels : o.out_channels, true, options));
  norm2 = register_module("norm2", GroupNorm(groups_out, o.out_channels, o.eps, options));
  conv2 = register_module("conv2", Conv2d(o.out_channels, o.out_channels, 3, 1, 1, options));
  if (o.in_channels != o.out_channels)
    conv_shortcut = register_module("conv_shortcut", Conv2d(o.in_channels, o.out_channels, 1, 1, 0, options));
}

at::Tensor ResnetBlock2DImpl::forward(const at::Tensor& x, const at::Tensor& temb) const {
  at::Tensor h = activate_tmp(norm1->forward(x), o_.act);
  h = conv1->forward(h);
  at::Tensor t;
  if (time_emb_proj && temb.defined()) {
    t = o_.skip_time_act ? temb : activate(temb, o_.act);
    t = time_emb_proj->forward(t).unsqueeze(-1).unsqueeze(-1);
  }
  if (!o_.scale_shift) {
    if (t.defined()) h = h + t;
    h = norm2->forward(h);
  } else {
    auto chunks = t.chunk(2, 1);
    h = norm2->forward(h);
    h = h * (chunks[0] + 1) + chunks[1];
  }
  h = activate_tmp(h, o_.act);
  h = conv2->forward(h);
  at::Tensor skip = conv_shortcut ? conv_shortcut->forward(x) : x;
  at::Tensor out = skip + h;
  if (o_.output_scale_factor != 1.0) out = out / o_.output_scale_factor;
  return out;
}

// ---- Downsample2D / Upsample2D ----------------------------------------------

Downsample2DImpl::Downsample2DImpl(std::int64_t channels, std::int64_t padding, const at::TensorOptions& options)
    : padding_(padding) {
  conv = register_module("conv", Conv2d(channels, channels, 3, 2, padding, options));
}

at::Tensor Downsample2DImpl::forward(const at::Tensor& x) const {
  if (padding_ == 0) return conv->forward(at::constant_pad_nd(x, {0, 1, 0, 1}, 0));
  return conv->forward(x);
}

Upsample2DImpl::Upsample2DImpl(std::int64_t channels, const at::TensorOptions& options) {
  conv = register_module("conv", Conv2d(channels, channels, 3, 1, 1, options));
}

at::Tensor Upsample2DImpl::forward(const at::Tensor& x, at::OptionalIntArrayRef size) const {
  at::Tensor h;
  if (size.has_value())
    h = at::upsample_nearest2d(x, at::IntArrayRef(*size), std::nullopt, std::nullopt);
  else
    h = at::upsample_nearest2d(x, {x.size(2) * 2, x.size(3) * 2}, 2.0, 2.0);
  return conv->forward(h);
}

// ---- Attention ---------------------------------------------------------------

AttentionImpl::AttentionImpl(const AttentionOptions& o, const at::TensorOptions& options) : o_(o) {
  const std::int64_t inner = o.heads * o.dim_head;
  const std::int64_t kv_dim = o.cross_attention_dim ? o.cross_attention_dim : o.query_dim;
  if (o.norm_groups > 0)
    group_norm = register_module("group_norm", GroupNorm(o.norm_groups, o.query_dim, o.norm_eps, options));
  to_q = register_module("to_q", Linear(o.query_dim, inner, o.bias, options));
  to_k = register_module("to_k", Linear(kv_dim, inner, o.bias, options));
  to_v = register_module("to_v", Linear(kv_dim, inner, o.bias, options));
  out_proj_ = Linear(inner, o.query_dim, true, options);
  to_out->push_back(out_proj_);
  to_out = register_module("to_out", to_out);
}

at::Tensor AttentionImpl::forward(const at::Tensor& input, const at::Tensor& context) const {
  const bool spatial = input.dim() == 4;
  const std::int64_t B = input.size(0);
  std::int64_t C = 0, H = 0, W = 0;
  at::Tensor x = input;
  if (spatial) {
    C = input.size(1), H = input.size(2), W = input.size(3);
    if (group_norm) x = group_norm->forward(x);
    x = x.flatten(2).transpose(1, 2);  // a view for NCHW and channels-last input
  } else if (group_norm) {
    x = group_norm->forward(x.transpose(1, 2)).transpose(1, 2);
  }
  const at::Tensor& kv = context.defined() ? context : x;
  const std::int64_t h = o_.heads, d = o_.dim_head;
  at::Tensor q = to_q->forward(x).view({B, -1, h, d}).transpose(1, 2);
  at::Tensor k = to_k->forward(kv).view({B, -1, h, d}).transpose(1, 2);
  at::Tensor v = to_v->forward(kv).view({B, -1, h, d}).transpose(1, 2);
  const auto dtype = q.scalar_type();
  const bool upcast = o_.upcast && (dtype == at::kHalf || dtype == at::kBFloat16);
  if (upcast) q = q.to(at::kFloat), k = k.to(at::kFloat), v = v.to(at::kFloat);
  at::Tensor a = at::scaled_dot_product_attention(q, k, v);
  if (upcast) a = a.to(dtype);
  a = a.transpose(1, 2).reshape({B, -1, h * d});
  at::Tensor out = out_proj_->forward(a);
  if (spatial) out = out.transpose(1, 2).reshape({B, C, H, W});
  if (o_.residual_connection) out = out + input;
  if (o_.rescale_output_factor != 1.0) out = out / o_.rescale_output_factor;
  return out;
}

// ---- FeedForward (GEGLU) -------------------------------------------------------

GEGLUImpl::GEGLUImpl(std::int64_t dim_in, std::int64_t dim_out, const at::TensorOptions& options) {
  proj = register_module("proj", Linear(dim_in, 2 * dim_out, true, options));
}

at::Tensor GEGLUImpl::forward(const at::Tensor& x) const {
  auto parts = proj->forward(x).chunk(2, -1);
  return parts[0] * at::gelu(parts[1]);
}

FeedForwardImpl::FeedForwardImpl(std::int64_t dim, const at::TensorOptions& options) {
  const std::int64_t inner = 4 * dim;
  geglu_ = GEGLU(dim, inner, options);
  out_ = Linear(inner, dim, true, options);
  net->push_back(geglu_);
  net->push_back(std::make_shared<torch::nn::Module>("Dropout"));  // net.1: no parameters
  net->push_back(out_);
  net = register_module("net", net);
}

at::Tensor FeedForwardImpl::forward(const at::Tensor& x) const { return out_->forward(geglu_->forward(x)); }

// ---- Transformer -----------------------------------------------------------------

BasicTransformerBlockImpl::BasicTransformerBlockImpl(const TransformerOptions& o, const at::TensorOptions& options)
    : only_cross_(o.only_cross_attention) {
  const std::int64_t dim = o.heads * o.dim_head;
  norm1 = register_module("norm1", LayerNorm(dim, 1e-5, options));
  AttentionOptions a1;
  a1.query_dim = dim;
  a1.heads = o.heads;
  a1.dim_head = o.dim_head;
  a1.upcast = o.upcast_attention;
  a1.cross_attention_dim = o.only_cross_attention ? o.cross_attention_dim : 0;
  attn1 = register_module("attn1", Attention(a1, options));
  norm2 = register_module("norm2", LayerNorm(dim, 1e-5, options));
  AttentionOptions a2 = a1;
  a2.cross_attention_dim = o.cross_attention_dim;
  attn2 = register_module("attn2", Attention(a2, options));
  norm3 = register_module("norm3", LayerNorm(dim, 1e-5, options));
  ff = register_module("ff", FeedForward(dim, options));
}

at::Tensor BasicTransformerBlockImpl::forward(const at::Tensor& x, const at::Tensor& context) const {
  at::Tensor h = attn1->forward(norm1->forward(x), only_cross_ ? context : at::Tensor()) + x;
  h = attn2->forward(norm2->forward(h), context) + h;
  h = ff->forward(norm3->forward(h)) + h;
  return h;
}

Transformer2DModelImpl::Transformer2DModelImpl(const TransformerOptions& o, const at::TensorOptions& options) : o_(o) {
  const std::int64_t inner = o.heads * o.dim_head;
  norm = register_module("norm", GroupNorm(o.norm_groups, o.in_channels, 1e-6, options));
  if (o.use_linear_projection)
    proj_in_linear = register_module("proj_in", Linear(o.in_channels, inner, true, options));
  else
    proj_in_conv = register_module("proj_in", Conv2d(o.in_channels, inner, 1, 1, 0, options));
  for (std::int64_t i = 0; i < o.num_layers; ++i) {
    blocks_.push_back(BasicTransformerBlock(o, options));
    transformer_blocks->push_back(blocks_.back());
  }
  transformer_blocks = register_module("transformer_blocks", transformer_blocks);
  if (o.use_linear_projection)
    proj_out_linear = register_module("proj_out", Linear(inner, o.in_channels, true, options));
  else
    proj_out_conv = register_module("proj_out", Conv2d(inner, o.in_channels, 1, 1, 0, options));
}

at::Tensor Transformer2DModelImpl::forward(const at::Tensor& x, const at::Tensor& context) const {
  const std::int64_t B = x.size(0), H = x.size(2), W = x.size(3);
  at::Tensor h = norm->forward(x);
  std::int64_t inner;
  if (!o_.use_linear_projection) {
    h = proj_in_conv->forward(h);
    inner = h.size(1);
    h = h.permute({0, 2, 3, 1}).reshape({B, H * W, inner});
  } else {
    inner = h.size(1);
    h = h.permute({0, 2, 3, 1}).reshape({B, H * W, inner});
    h = proj_in_linear->forward(h);
  }
  for (const auto& b : blocks_) h = b->forward(h, context);
  if (!o_.use_linear_projection) {
    h = h.reshape({B, H, W, h.size(-1)}).permute({0, 3, 1, 2}).contiguous();
    h = proj_out_conv->forward(h);
  } else {
    h = proj_out_linear->forward(h);
    h = h.reshape({B, H, W, h.size(-1)}).permute({0, 3, 1, 2}).contiguous();
  }
  return h + x;
}

// ---- time embedding ------------------------------------------------------------

at::Tensor timestep_embedding(const at::Tensor& timesteps, std::int64_t dim, bool flip_sin_to_cos,
                              double downscale_freq_shift) {
  const std::int64_t half = dim / 2;
  auto opts = at::TensorOptions().dtype(at::kFloat).device(timesteps.device());
  at::Tensor exponent = at::arange(0, half, opts) * (-std::log(10000.0));
  exponent = exponent / (static_cast<double>(half) - downscale_freq_shift);
  at::Tensor emb = at::exp(exponent);
  emb = timesteps.unsqueeze(1).to(at::kFloat) * emb.unsqueeze(0);
  emb = at::cat({at::sin(emb), at::cos(emb)}, -1);
  if (flip_sin_to_cos) emb = at::cat({emb.slice(1, half), emb.slice(1, 0, half)}, -1);
  if (dim % 2 == 1) emb = at::constant_pad_nd(emb, {0, 1, 0, 0}, 0);
  return emb;
}

TimestepEmbeddingImpl::TimestepEmbeddingImpl(std::int64_t in, std::int64_t dim, Activation act,
                                             std::optional<Activation> post_act, const at::TensorOptions& options)
    : act_(act), post_act_(post_act) {
  linear_1 = register_module("linear_1", Linear(in, dim, true, options));
  linear_2 = register_module("linear_2", Linear(dim, dim, true, options));
}

at::Tensor TimestepEmbeddingImpl::forward(const at::Tensor& x) const {
  at::Tensor emb = linear_2->forward(activate(linear_1->forward(x), act_));  // [N, in] -> [N, dim]
  return post_act_ ? activate(emb, *post_act_) : emb;
}

}  // namespace dinv::sd
