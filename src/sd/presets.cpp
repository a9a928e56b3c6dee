#include "dinv/sd/presets.h"

#include <filesystem>
#include <map>
#include <utility>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/grad_mode.h>

#include "dinv/core/error.h"
#include "dinv/core/log.h"
#include "dinv/io/safetensors.h"
#include "dinv/sd/layers.h"
#include "dinv/sd/clip_text.h"
#include "dinv/sd/tokenizer.h"
#include "dinv/sd/unet.h"
#include "dinv/sd/vae.h"

namespace fs = std::filesystem;

namespace dinv::sd {

using io::Json;

namespace {

constexpr const char* kDiffusersVersion = "0.42.1";

void check_preset(const std::string& p) {
  for (const auto& n : preset_names())
    if (n == p) return;
  std::string list;
  for (const auto& n : preset_names()) list += (list.empty() ? "" : ", ") + n;
  throw ConfigError("unknown model preset '" + p + "' (allowed: " + list + ")");
}

void make_dir(const fs::path& p) {
  std::error_code ec;
  fs::create_directories(p, ec);
  if (ec) throw IoError(p.string() + ": cannot create folder: " + ec.message());
}

// model_index.json entries, e.g. "text_encoder" -> ("transformers", "CLIPTextModel").
using ComponentEntries = std::map<std::string, std::pair<std::string, std::string>>;

// The published text encoders of SD 1.5 and SD 2.1; tiny matches the tiny UNet's width.
ClipTextConfig preset_text_config(const std::string& preset) {
  ClipTextConfig c;
  ClipEncoderConfig& e = c.encoder;
  e.hidden_size = preset_cross_attention_dim(preset);  // ConfigError for an unknown preset
  if (preset == "tiny") {
    e.intermediate_size = 37;
    e.num_hidden_layers = 5;
    e.num_attention_heads = 4;
  } else if (preset == "sd15") {
    e.intermediate_size = 3072;
    e.num_hidden_layers = 12;
    e.num_attention_heads = 12;
  } else {  // sd21: OpenCLIP ViT-H text tower, last layer already removed
    e.intermediate_size = 4096;
    e.num_hidden_layers = 23;
    e.num_attention_heads = 16;
    e.hidden_act = "gelu";
  }
  return c;
}

// Random weights as transformers initialises CLIP: N(0, 0.02), LayerNorm 1/0, biases 0.
void init_clip_random(ClipTextModel& model, std::uint64_t seed) {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  torch::NoGradGuard no_grad;
  for (auto& p : model->named_parameters()) {
    const std::string& name = p.key();
    at::Tensor t = p.value();
    const bool norm = name.find("layer_norm") != std::string::npos;
    if (name.size() > 5 && name.compare(name.size() - 5, 5, ".bias") == 0)
      t.zero_();
    else if (norm)
      t.fill_(1.0);
    else
      t.normal_(0.0, 0.02, gen);
  }
}

// OUT/text_encoder/ and OUT/tokenizer/ for a preset (random weights from
// `seed`); returns their model_index.json entries.
ComponentEntries write_text_components(const std::string& out, const std::string& preset, std::uint64_t seed) {
  const ClipTextConfig config = preset_text_config(preset);
  ClipTextModel model(config);
  init_clip_random(model, seed);
  const std::string te = out + "/text_encoder";
  make_dir(te);
  io::write_json_file(te + "/config.json", config.to_json());
  std::map<std::string, at::Tensor> tensors;
  for (const auto& p : model->named_parameters()) tensors.emplace(p.key(), p.value());
  io::write_safetensors(te + "/model.safetensors", tensors, {{"format", "pt"}});
  // SD 2.x's tokenizer pads with "!" (id 0), SD 1.x's with <|endoftext|>.
  write_clip_tokenizer_folder(default_clip_merges_path(), out + "/tokenizer", preset == "sd21" ? "!" : "<|endoftext|>");
  return {{"text_encoder", {"transformers", "CLIPTextModel"}}, {"tokenizer", {"transformers", "CLIPTokenizer"}}};
}

Json sd_down() {
  return Json::array({"CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"});
}
Json sd_up() { return Json::array({"UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"}); }

}  // namespace

const std::vector<std::string>& preset_names() {
  static const std::vector<std::string> names{"tiny", "sd15", "sd21"};
  return names;
}

Json preset_unet_config(const std::string& preset) {
  check_preset(preset);
  Json c = {{"_class_name", "UNet2DConditionModel"},
            {"_diffusers_version", kDiffusersVersion},
            {"act_fn", "silu"},
            {"center_input_sample", false},
            {"downsample_padding", 1},
            {"flip_sin_to_cos", true},
            {"freq_shift", 0},
            {"in_channels", 4},
            {"mid_block_scale_factor", 1},
            {"norm_eps", 1e-05},
            {"out_channels", 4}};
  if (preset == "tiny") {
    c["attention_head_dim"] = 2;
    c["block_out_channels"] = {32, 64};
    c["cross_attention_dim"] = 32;
    c["down_block_types"] = {"CrossAttnDownBlock2D", "DownBlock2D"};
    c["up_block_types"] = {"UpBlock2D", "CrossAttnUpBlock2D"};
    c["layers_per_block"] = 1;
    c["norm_num_groups"] = 8;
    c["sample_size"] = 16;
  } else if (preset == "sd15") {
    // runwayml/stable-diffusion-v1-5 unet/config.json
    c["attention_head_dim"] = 8;
    c["block_out_channels"] = {320, 640, 1280, 1280};
    c["cross_attention_dim"] = 768;
    c["down_block_types"] = sd_down();
    c["up_block_types"] = sd_up();
    c["layers_per_block"] = 2;
    c["norm_num_groups"] = 32;
    c["sample_size"] = 64;
  } else {
    // stabilityai/stable-diffusion-2-1 (768, v-prediction) unet/config.json
    c["attention_head_dim"] = {5, 10, 20, 20};
    c["block_out_channels"] = {320, 640, 1280, 1280};
    c["cross_attention_dim"] = 1024;
    c["down_block_types"] = sd_down();
    c["up_block_types"] = sd_up();
    c["dual_cross_attention"] = false;
    c["layers_per_block"] = 2;
    c["norm_num_groups"] = 32;
    c["num_class_embeds"] = nullptr;
    c["only_cross_attention"] = false;
    c["sample_size"] = 96;
    c["upcast_attention"] = true;
    c["use_linear_projection"] = true;
  }
  return c;
}

Json preset_vae_config(const std::string& preset) {
  check_preset(preset);
  Json c = {{"_class_name", "AutoencoderKL"},
            {"_diffusers_version", kDiffusersVersion},
            {"act_fn", "silu"},
            {"in_channels", 3},
            {"latent_channels", 4},
            {"out_channels", 3},
            {"scaling_factor", 0.18215}};
  if (preset == "tiny") {
    c["block_out_channels"] = {32, 64};
    c["down_block_types"] = {"DownEncoderBlock2D", "DownEncoderBlock2D"};
    c["up_block_types"] = {"UpDecoderBlock2D", "UpDecoderBlock2D"};
    c["layers_per_block"] = 1;
    c["norm_num_groups"] = 8;
    c["sample_size"] = 32;
  } else {
    c["block_out_channels"] = {128, 256, 512, 512};
    c["down_block_types"] =
        Json::array({"DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"});
    c["up_block_types"] = Json::array({"UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"});
    c["layers_per_block"] = 2;
    c["norm_num_groups"] = 32;
    c["sample_size"] = preset == "sd15" ? 512 : 768;
  }
  return c;
}

Json preset_scheduler_config(const std::string& preset) {
  check_preset(preset);
  Json c = {{"_diffusers_version", kDiffusersVersion},
            {"beta_end", 0.012},
            {"beta_schedule", "scaled_linear"},
            {"beta_start", 0.00085},
            {"clip_sample", false},
            {"num_train_timesteps", 1000},
            {"set_alpha_to_one", false},
            {"skip_prk_steps", true},
            {"steps_offset", 1},
            {"trained_betas", nullptr}};
  if (preset == "sd21") {
    // stabilityai/stable-diffusion-2-1 ships DDIM with v-prediction.
    c["_class_name"] = "DDIMScheduler";
    c["prediction_type"] = "v_prediction";
  } else {
    // SD 1.x ships PNDM (epsilon prediction).
    c["_class_name"] = "PNDMScheduler";
  }
  return c;
}

std::int64_t preset_cross_attention_dim(const std::string& preset) {
  return preset_unet_config(preset)["cross_attention_dim"].get<std::int64_t>();
}

namespace {

void write_weights(const fs::path& dir, torch::nn::Module& m) {
  std::map<std::string, at::Tensor> tensors;
  for (const auto& p : m.named_parameters(true)) tensors.emplace(p.key(), p.value());
  io::write_safetensors((dir / "diffusion_pytorch_model.safetensors").string(), tensors, {{"format", "pt"}});
}

}  // namespace

InitReport init_model_folder(const std::string& out, const std::string& preset, std::uint64_t seed, bool weights) {
  check_preset(preset);
  InitReport report;
  const fs::path root(out);
  make_dir(root);
  const auto opts = at::TensorOptions().dtype(at::kFloat);
  {
    make_dir(root / "unet");
    const Json cfg = preset_unet_config(preset);
    UNet2DConditionModel unet(UNetConfig::from_json(cfg, preset + " unet preset"),
                              weights ? opts : opts.device(at::kMeta));
    if (weights) {
      init_random(*unet, seed * 4 + 1);
      write_weights(root / "unet", *unet);
    }
    io::write_json_file((root / "unet" / "config.json").string(), cfg);
    report.written.push_back("unet");
  }
  {
    make_dir(root / "vae");
    const Json cfg = preset_vae_config(preset);
    AutoencoderKL vae(VaeConfig::from_json(cfg, preset + " vae preset"), weights ? opts : opts.device(at::kMeta));
    if (weights) {
      init_random(*vae, seed * 4 + 2);
      write_weights(root / "vae", *vae);
    }
    io::write_json_file((root / "vae" / "config.json").string(), cfg);
    report.written.push_back("vae");
  }
  make_dir(root / "scheduler");
  const Json sched = preset_scheduler_config(preset);
  io::write_json_file((root / "scheduler" / "scheduler_config.json").string(), sched);
  report.written.push_back("scheduler");

  const ComponentEntries text = weights ? write_text_components(out, preset, seed * 4 + 3) : ComponentEntries{};

  Json index = {{"_class_name", "StableDiffusionPipeline"},      {"_diffusers_version", kDiffusersVersion},
                {"feature_extractor", {nullptr, nullptr}},       {"requires_safety_checker", false},
                {"safety_checker", {nullptr, nullptr}},          {"scheduler", {"diffusers", sched["_class_name"]}},
                {"unet", {"diffusers", "UNet2DConditionModel"}}, {"vae", {"diffusers", "AutoencoderKL"}}};
  for (const auto& [name, lib_cls] : text) {
    index[name] = {lib_cls.first, lib_cls.second};
    report.written.push_back(name);
  }
  io::write_json_file((root / "model_index.json").string(), index);
  return report;
}

}  // namespace dinv::sd
