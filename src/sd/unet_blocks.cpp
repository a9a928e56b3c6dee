#include "dinv/sd/unet_blocks.h"

namespace dinv::sd {
namespace {

// `modules` as the ModuleList `name` of `owner` (diffusers' nn.ModuleList attributes).
template <typename M>
void register_list(torch::nn::Module& owner, const char* name, const std::vector<M>& modules) {
  torch::nn::ModuleList list;
  for (const auto& m : modules) list->push_back(m);
  owner.register_module(name, list);
}

ResnetBlock2D resnet(ResnetOptions r, std::int64_t in, std::int64_t out, const at::TensorOptions& options) {
  r.in_channels = in;
  r.out_channels = out;
  return ResnetBlock2D(r, options);
}

// Down path: the first layer takes in_channels, the others out_channels.
std::vector<ResnetBlock2D> down_resnets(const UNetBlockOptions& o, const at::TensorOptions& options) {
  std::vector<ResnetBlock2D> rs;
  for (std::int64_t l = 0; l < o.num_layers; ++l)
    rs.push_back(resnet(o.resnet, l == 0 ? o.in_channels : o.out_channels, o.out_channels, options));
  return rs;
}

// Up path with skips: layer l takes the block below's output (l = 0) or its
// own, plus a skip of out_channels, or in_channels for the last layer.
std::vector<ResnetBlock2D> up_resnets(const UNetBlockOptions& o, const at::TensorOptions& options) {
  std::vector<ResnetBlock2D> rs;
  for (std::int64_t l = 0; l < o.num_layers; ++l) {
    const std::int64_t skip = l == o.num_layers - 1 ? o.in_channels : o.out_channels;
    const std::int64_t from_below = l == 0 ? o.prev_output_channel : o.out_channels;
    rs.push_back(resnet(o.resnet, from_below + skip, o.out_channels, options));
  }
  return rs;
}

// One Transformer2DModel per layer over out_channels.
std::vector<Transformer2DModel> transformers(const UNetBlockOptions& o, const at::TensorOptions& options) {
  TransformerOptions t = o.transformer;
  t.in_channels = o.out_channels;
  t.dim_head = o.out_channels / t.heads;
  std::vector<Transformer2DModel> ts;
  for (std::int64_t l = 0; l < o.num_layers; ++l) ts.push_back(Transformer2DModel(t, options));
  return ts;
}

// The optional sampler after a block's layers, as the one-element ModuleList `name`.
template <typename Sampler, typename... Args>
Sampler sampler(torch::nn::Module& owner, const UNetBlockOptions& o, const char* name, Args... args) {
  if (!o.add_sampler) return Sampler(nullptr);
  Sampler s(o.out_channels, args...);
  register_list(owner, name, std::vector<Sampler>{s});
  return s;
}

Downsample2D downsampler(torch::nn::Module& owner, const UNetBlockOptions& o, const at::TensorOptions& options) {
  return sampler<Downsample2D>(owner, o, "downsamplers", o.downsample_padding, options);
}

Upsample2D upsampler(torch::nn::Module& owner, const UNetBlockOptions& o, const at::TensorOptions& options) {
  return sampler<Upsample2D>(owner, o, "upsamplers", options);
}

}  // namespace

// ---- down ----------------------------------------------------------------------------

at::Tensor UNetDownBlockImpl::downsample(at::Tensor x, std::vector<at::Tensor>& skips) const {
  if (!downsampler_) return x;
  x = downsampler_->forward(x);  // [B, C, H, W] -> [B, C, H/2, W/2]
  skips.push_back(x);
  return x;
}

DownBlock2DImpl::DownBlock2DImpl(const UNetBlockOptions& o, const at::TensorOptions& options) {
  resnets_ = down_resnets(o, options);
  register_list(*this, "resnets", resnets_);
  downsampler_ = downsampler(*this, o, options);
}

at::Tensor DownBlock2DImpl::forward(at::Tensor x, const at::Tensor& temb, const at::Tensor&,
                                    std::vector<at::Tensor>& skips) const {
  for (const auto& r : resnets_) {
    x = r->forward(x, temb);  // [B, C_in or C_out, H, W] -> [B, C_out, H, W]
    skips.push_back(x);
  }
  return downsample(x, skips);  // -> [B, C_out, H/2, W/2]
}

CrossAttnDownBlock2DImpl::CrossAttnDownBlock2DImpl(const UNetBlockOptions& o, const at::TensorOptions& options) {
  resnets_ = down_resnets(o, options);
  attentions_ = transformers(o, options);
  register_list(*this, "resnets", resnets_);
  register_list(*this, "attentions", attentions_);
  downsampler_ = downsampler(*this, o, options);
}

at::Tensor CrossAttnDownBlock2DImpl::forward(at::Tensor x, const at::Tensor& temb, const at::Tensor& context,
                                             std::vector<at::Tensor>& skips) const {
  for (size_t l = 0; l < resnets_.size(); ++l) {
    x = resnets_[l]->forward(x, temb);        // [B, C_in or C_out, H, W] -> [B, C_out, H, W]
    x = attentions_[l]->forward(x, context);  // [B, C_out, H, W], attending to context [B, T, D]
    skips.push_back(x);
  }
  return downsample(x, skips);  // -> [B, C_out, H/2, W/2]
}

// ---- mid -----------------------------------------------------------------------------

UNetMidBlock2DCrossAttnImpl::UNetMidBlock2DCrossAttnImpl(const UNetBlockOptions& o, const at::TensorOptions& options) {
  UNetBlockOptions one = o;
  one.num_layers = 1;
  resnets_ = {resnet(o.resnet, o.in_channels, o.in_channels, options),
              resnet(o.resnet, o.in_channels, o.in_channels, options)};
  attention_ = transformers(one, options).front();
  register_list(*this, "resnets", resnets_);
  register_list(*this, "attentions", std::vector<Transformer2DModel>{attention_});
}

at::Tensor UNetMidBlock2DCrossAttnImpl::forward(at::Tensor x, const at::Tensor& temb, const at::Tensor& context) const {
  x = resnets_[0]->forward(x, temb);     // [B, C, H, W] -> [B, C, H, W]
  x = attention_->forward(x, context);   // [B, C, H, W], attending to context [B, T, D]
  return resnets_[1]->forward(x, temb);  // [B, C, H, W]
}

// ---- up ------------------------------------------------------------------------------

at::Tensor UNetUpBlockImpl::concat_skip(const at::Tensor& x, std::vector<at::Tensor>& skips) {
  at::Tensor skip = skips.back();
  skips.pop_back();
  return at::cat({x, skip}, 1);  // [B, C, H, W] + [B, C_skip, H, W] -> [B, C + C_skip, H, W]
}

at::Tensor UNetUpBlockImpl::upsample(at::Tensor x, const std::vector<at::Tensor>& skips, bool to_skip_size) const {
  if (!upsampler_) return x;
  if (to_skip_size) return upsampler_->forward(x, skips.back().sizes().slice(2));  // -> [B, C, H', W'] of the skip
  return upsampler_->forward(x);                                                   // -> [B, C, 2H, 2W]
}

UpBlock2DImpl::UpBlock2DImpl(const UNetBlockOptions& o, const at::TensorOptions& options) {
  resnets_ = up_resnets(o, options);
  register_list(*this, "resnets", resnets_);
  upsampler_ = upsampler(*this, o, options);
}

at::Tensor UpBlock2DImpl::forward(at::Tensor x, std::vector<at::Tensor>& skips, const at::Tensor& temb,
                                  const at::Tensor&, bool to_skip_size) const {
  for (const auto& r : resnets_)
    x = r->forward(concat_skip(x, skips), temb);  // [B, C + C_skip, H, W] -> [B, C_out, H, W]
  return upsample(x, skips, to_skip_size);        // -> [B, C_out, 2H, 2W]
}

CrossAttnUpBlock2DImpl::CrossAttnUpBlock2DImpl(const UNetBlockOptions& o, const at::TensorOptions& options) {
  resnets_ = up_resnets(o, options);
  attentions_ = transformers(o, options);
  register_list(*this, "resnets", resnets_);
  register_list(*this, "attentions", attentions_);
  upsampler_ = upsampler(*this, o, options);
}

at::Tensor CrossAttnUpBlock2DImpl::forward(at::Tensor x, std::vector<at::Tensor>& skips, const at::Tensor& temb,
                                           const at::Tensor& context, bool to_skip_size) const {
  for (size_t l = 0; l < resnets_.size(); ++l) {
    x = resnets_[l]->forward(concat_skip(x, skips), temb);  // [B, C + C_skip, H, W] -> [B, C_out, H, W]
    x = attentions_[l]->forward(x, context);                // [B, C_out, H, W], attending to context [B, T, D]
  }
  return upsample(x, skips, to_skip_size);  // -> [B, C_out, 2H, 2W]
}

// ---- VAE -----------------------------------------------------------------------------

DownEncoderBlock2DImpl::DownEncoderBlock2DImpl(const UNetBlockOptions& o, const at::TensorOptions& options) {
  resnets_ = down_resnets(o, options);
  register_list(*this, "resnets", resnets_);
  downsampler_ = downsampler(*this, o, options);
}

at::Tensor DownEncoderBlock2DImpl::forward(at::Tensor x) const {
  for (const auto& r : resnets_) x = r->forward(x, {});  // [B, C_in or C_out, H, W] -> [B, C_out, H, W]
  return downsampler_ ? downsampler_->forward(x) : x;    // -> [B, C_out, H/2, W/2]
}

UNetMidBlock2DImpl::UNetMidBlock2DImpl(std::int64_t channels, const ResnetOptions& r, bool add_attention,
                                       const at::TensorOptions& options) {
  resnets_ = {resnet(r, channels, channels, options), resnet(r, channels, channels, options)};
  if (add_attention) {
    AttentionOptions a;
    a.query_dim = channels;
    a.heads = 1;
    a.dim_head = channels;
    a.bias = true;
    a.norm_groups = r.groups;
    a.norm_eps = r.eps;
    a.residual_connection = true;
    attention_ = Attention(a, options);
    register_list(*this, "attentions", std::vector<Attention>{attention_});
  }
  register_list(*this, "resnets", resnets_);
}

at::Tensor UNetMidBlock2DImpl::forward(at::Tensor x) const {
  x = resnets_[0]->forward(x, {});             // [B, C, H, W] -> [B, C, H, W]
  if (attention_) x = attention_->forward(x);  // self-attention over the H*W positions, [B, C, H, W]
  return resnets_[1]->forward(x, {});          // [B, C, H, W]
}

UpDecoderBlock2DImpl::UpDecoderBlock2DImpl(const UNetBlockOptions& o, const at::TensorOptions& options) {
  resnets_ = down_resnets(o, options);  // no skips: the first layer takes in_channels, as on the way down
  register_list(*this, "resnets", resnets_);
  upsampler_ = upsampler(*this, o, options);
}

at::Tensor UpDecoderBlock2DImpl::forward(at::Tensor x) const {
  for (const auto& r : resnets_) x = r->forward(x, {});  // [B, C_in or C_out, H, W] -> [B, C_out, H, W]
  return upsampler_ ? upsampler_->forward(x) : x;        // -> [B, C_out, 2H, 2W]
}

}  // namespace dinv::sd
