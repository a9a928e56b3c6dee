#include "dinv/sd/clip_vision.h"

#include <ATen/ATen.h>
#include <c10/util/StringUtil.h>

#include "config_reader.h"
#include "dinv/core/error.h"
#include "dinv/sd/layers.h"

namespace dinv::sd {
namespace {

// The class that saved a config.json must be a CLIP vision tower (or a whole
// CLIPModel, whose "vision_config" is then read).
void check_architecture(const io::JsonObject& o) {
  if (!o.has("architectures")) return;
  const auto arch = o.get_string_list("architectures");
  for (const auto& a : arch)
    if (a == "CLIPVisionModelWithProjection" || a == "CLIPVisionModel" || a == "CLIPModel") return;
  throw ModelError(o.where() + ": key 'architectures': expected CLIPVisionModelWithProjection, found " +
                   o.at("architectures").dump());
}

std::array<double, 3> three_doubles(const io::JsonObject& o, const char* key, std::array<double, 3> fallback) {
  if (!o.has(key)) return fallback;
  const io::Json& v = o.at(key);
  if (v.is_number()) return {v.get<double>(), v.get<double>(), v.get<double>()};
  if (!v.is_array() || v.size() != 3)
    throw ModelError(o.where() + ": key '" + key + "': expected a list of 3 numbers, found " + v.dump());
  std::array<double, 3> out{};
  for (size_t i = 0; i < 3; ++i) {
    if (!v[i].is_number()) throw ModelError(o.where() + ": key '" + key + "': expected numbers, found " + v.dump());
    out[i] = v[i].get<double>();
  }
  return out;
}

// PILImageResampling codes as transformers stores them ("resample": 3).
io::ResizeFilter filter_from_code(const io::JsonObject& o) {
  const std::int64_t code = o.get_int("resample", 3);
  switch (code) {
    case 0:
      return io::ResizeFilter::nearest;
    case 1:
      return io::ResizeFilter::lanczos;
    case 2:
      return io::ResizeFilter::bilinear;
    case 3:
      return io::ResizeFilter::bicubic;
    default:
      throw ModelError(o.where() + ": key 'resample': expected 0 (nearest), 1 (lanczos), 2 (bilinear) or 3 " +
                       "(bicubic), found " + std::to_string(code));
  }
}

// "size"/"crop_size": an integer, or {"shortest_edge": N} / {"height": H, "width": W}.
std::pair<std::int64_t, std::int64_t> size_of(const io::JsonObject& o, const char* key, std::int64_t fallback,
                                              const char* field) {
  if (!o.has(key)) return {fallback, fallback};
  if (o.at(key).is_number_integer()) {
    const auto v = o.get_int(key);
    return {v, v};
  }
  const io::JsonObject s = o.object(key);
  if (s.has(field)) {
    const auto v = s.get_int(field);
    return {v, v};
  }
  if (s.has("height") && s.has("width")) return {s.get_int("height"), s.get_int("width")};
  throw ModelError(o.where() + ": key '" + key + "': expected {\"" + field +
                   "\": N} or {\"height\": H, \"width\": W}, " + "found " + o.at(key).dump());
}

}  // namespace

// --- config -----------------------------------------------------------------

ClipVisionConfig ClipVisionConfig::from_json(const io::Json& json, const std::string& where) {
  const io::JsonObject top(json, where);
  check_architecture(top);
  const io::JsonObject o = top.has("vision_config") ? top.object("vision_config") : top;
  ClipVisionConfig c;
  c.encoder = ClipEncoderConfig::from_json(o.json(), where, c.encoder);
  // A CLIPConfig keeps projection_dim at its top level.
  c.projection_dim = top.get_int("projection_dim", c.projection_dim);
  using detail::between;
  static const std::vector<detail::Field<ClipVisionConfig>> fields{
      detail::field("image_size", &ClipVisionConfig::image_size, between{1, 16384}),
      detail::field("patch_size", &ClipVisionConfig::patch_size, between{1, 16384}),
      detail::field("num_channels", &ClipVisionConfig::num_channels, between{1, 3}),
      detail::field("projection_dim", &ClipVisionConfig::projection_dim, between{1, 65536}),
  };
  const detail::ConfigReader r(o.json(), where);
  detail::read_fields(r, c, fields);
  if (c.image_size % c.patch_size != 0)
    r.fail("patch_size", io::Json(c.patch_size), "must divide image_size (" + std::to_string(c.image_size) + ")");
  return c;
}

// --- modules ----------------------------------------------------------------

ClipVisionEmbeddingsImpl::ClipVisionEmbeddingsImpl(const ClipVisionConfig& c) {
  const auto d = c.encoder.hidden_size;
  class_embedding_ = register_parameter("class_embedding", at::zeros({d}));
  patch_embedding_ = register_module(
      "patch_embedding",
      torch::nn::Conv2d(torch::nn::Conv2dOptions(c.num_channels, d, c.patch_size).stride(c.patch_size).bias(false)));
  position_embedding_ = register_module("position_embedding", torch::nn::Embedding(c.grid() * c.grid() + 1, d));
}

at::Tensor ClipVisionEmbeddingsImpl::forward(const at::Tensor& pixel_values) {
  const auto b = pixel_values.size(0);
  at::Tensor patches = patch_embedding_(pixel_values);                           // [B, D, grid, grid]
  patches = patches.flatten(2).transpose(1, 2);                                  // [B, grid^2, D]
  const at::Tensor cls = class_embedding_.expand({b, 1, -1});                    // [B, 1, D]
  return at::cat({cls, patches}, 1) + position_embedding_->weight.unsqueeze(0);  // [B, 1 + grid^2, D]
}

ClipVisionTransformerImpl::ClipVisionTransformerImpl(const ClipVisionConfig& c) {
  auto norm = [&] {
    return torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.encoder.hidden_size}).eps(c.encoder.layer_norm_eps));
  };
  embeddings_ = register_module("embeddings", ClipVisionEmbeddings(c));
  pre_layrnorm_ = register_module("pre_layrnorm", norm());
  encoder_ = register_module("encoder", ClipEncoder(c.encoder, /*causal=*/false));
  post_layernorm_ = register_module("post_layernorm", norm());
}

at::Tensor ClipVisionTransformerImpl::forward(const at::Tensor& pixel_values, at::Tensor* pooled) {
  const at::Tensor h = encoder_(pre_layrnorm_(embeddings_(pixel_values)));  // [B, 1 + grid^2, D]
  if (pooled) *pooled = post_layernorm_(h.select(1, 0));                    // [B, D]: the class token
  return h;
}

ClipVisionModelImpl::ClipVisionModelImpl(const ClipVisionConfig& config) : config_(config) {
  vision_model_ = register_module("vision_model", ClipVisionTransformer(config));
  visual_projection_ = register_module(
      "visual_projection",
      torch::nn::Linear(torch::nn::LinearOptions(config.encoder.hidden_size, config.projection_dim).bias(false)));
}

ClipVisionOutput ClipVisionModelImpl::forward(const at::Tensor& pixel_values) {
  const auto s = config_.image_size;
  if (pixel_values.dim() != 4 || pixel_values.size(1) != config_.num_channels || pixel_values.size(2) != s ||
      pixel_values.size(3) != s || !at::isFloatingType(pixel_values.scalar_type()))
    throw ModelError("CLIP vision input: expected float [batch, " + std::to_string(config_.num_channels) + ", " +
                     std::to_string(s) + ", " + std::to_string(s) + "] pixel values, found " +
                     std::string(at::toString(pixel_values.scalar_type())) + " " + c10::str(pixel_values.sizes()));
  ClipVisionOutput out;
  at::Tensor pooled;
  const auto dtype = visual_projection_->weight.scalar_type();
  out.last_hidden_state = vision_model_->forward(pixel_values.to(dtype), &pooled);
  out.image_embeds = visual_projection_(pooled);  // [B, projection_dim]
  return out;
}

ClipVisionModel load_clip_vision_model(const std::string& dir, const LoadOptions& options) {
  // find_component looks for PARENT/NAME/: split the folder into the two.
  std::string path = dir;
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  const size_t slash = path.find_last_of('/');
  const std::string parent = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  const std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
  const ComponentFiles files = find_component(parent, name, options.variant, {"model"});
  const ClipVisionConfig config = ClipVisionConfig::from_json(detail::read_model_json(files.config), files.config);
  ClipVisionModel model(config);
  model->to(options.device, options.dtype);
  load_weights(*model, files.weights, options);
  freeze(*model);
  model->eval();
  return model;
}

// --- preprocessing ------------------------------------------------------------

ClipImageProcessor ClipImageProcessor::from_file(const std::string& path) {
  const io::Json json = detail::read_model_json(path);
  const io::JsonObject o(json, path);
  ClipImageProcessor p;
  p.do_resize = o.get_bool("do_resize", p.do_resize);
  p.shortest_edge = size_of(o, "size", p.shortest_edge, "shortest_edge").first;
  p.resample = filter_from_code(o);
  p.do_center_crop = o.get_bool("do_center_crop", p.do_center_crop);
  std::tie(p.crop_height, p.crop_width) = size_of(o, "crop_size", p.crop_height, "shortest_edge");
  p.do_rescale = o.get_bool("do_rescale", p.do_rescale);
  p.rescale_factor = o.get_double("rescale_factor", p.rescale_factor);
  p.do_normalize = o.get_bool("do_normalize", p.do_normalize);
  p.image_mean = three_doubles(o, "image_mean", p.image_mean);
  p.image_std = three_doubles(o, "image_std", p.image_std);
  check_config_size(path, "size.shortest_edge", p.shortest_edge, 16384);
  check_config_size(path, "crop_size.height", p.crop_height, 16384);
  check_config_size(path, "crop_size.width", p.crop_width, 16384);
  for (double s : p.image_std)
    if (!(s > 0)) throw ModelError(path + ": key 'image_std': every value must be positive");
  return p;
}

at::Tensor ClipImageProcessor::operator()(const at::Tensor& image) const {
  if (image.dim() != 3 || image.scalar_type() != at::kByte || (image.size(2) != 1 && image.size(2) != 3))
    throw IoError("CLIP preprocessing: expected a uint8 [H, W, 1 or 3] image, found " +
                  std::string(at::toString(image.scalar_type())) + " " + c10::str(image.sizes()));
  at::Tensor img = image.size(2) == 1 ? image.expand({-1, -1, 3}).contiguous() : image;  // do_convert_rgb
  if (do_resize) {
    // transformers' get_resize_output_image_size: the short side becomes
    // shortest_edge, the long side int(shortest_edge * long / short).
    const auto h = img.size(0), w = img.size(1);
    const bool wide = w > h;
    const auto short_side = wide ? h : w, long_side = wide ? w : h;
    const auto new_long = static_cast<std::int64_t>(static_cast<double>(shortest_edge) *
                                                    static_cast<double>(long_side) / static_cast<double>(short_side));
    img = io::resize(img, wide ? shortest_edge : new_long, wide ? new_long : shortest_edge, resample);
  }
  if (do_center_crop) {
    const auto h = img.size(0), w = img.size(1);
    if (h < crop_height || w < crop_width)  // transformers pads then; CLIP never asks for it
      throw IoError("CLIP preprocessing: a " + std::to_string(h) + "x" + std::to_string(w) +
                    " image is smaller than the crop " + std::to_string(crop_height) + "x" +
                    std::to_string(crop_width));
    const auto top = (h - crop_height) / 2, left = (w - crop_width) / 2;
    img = img.slice(0, top, top + crop_height).slice(1, left, left + crop_width);
  }
  at::Tensor x = img.permute({2, 0, 1}).to(at::kDouble);  // [3, H, W]
  // Rescaled in float64, then float32, as transformers' rescale does.
  x = (do_rescale ? x * rescale_factor : x).to(at::kFloat);
  if (do_normalize) {
    const auto opts = at::TensorOptions().dtype(at::kFloat);
    const at::Tensor mean = at::tensor({image_mean[0], image_mean[1], image_mean[2]}, at::kDouble).to(opts);
    const at::Tensor std = at::tensor({image_std[0], image_std[1], image_std[2]}, at::kDouble).to(opts);
    x = (x - mean.view({3, 1, 1})) / std.view({3, 1, 1});
  }
  return x.contiguous();
}

}  // namespace dinv::sd
