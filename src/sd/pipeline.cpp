#include "dinv/sd/pipeline.h"

#include "dinv/core/error.h"
#include "dinv/sd/loader.h"

namespace dinv::sd {

at::ScalarType stage_dtype(const std::string& name, c10::Device device, const std::string& key) {
  if (name == "fp32") return at::kFloat;
  if (name != "fp16" && name != "bf16")
    throw ConfigError(key + " = '" + name + "' is not a dtype (allowed: fp32, fp16, bf16)");
  if (!device.is_cuda())
    throw ConfigError(key + " = '" + name + "' needs a GPU: this rank runs on " + device.str() +
                      ", where dinv computes in fp32");
  return name == "fp16" ? at::kHalf : at::kBFloat16;
}

std::shared_ptr<Pipeline> load_pipeline(const std::string& dir, c10::Device device, at::ScalarType dtype) {
  auto p = std::make_shared<Pipeline>();
  p->dir = dir;
  p->device = device;
  p->dtype = dtype;
  LoadOptions lo;
  lo.device = device;
  lo.dtype = dtype;
  p->unet = load_unet(dir, lo);
  p->vae = load_vae(dir, lo);
  p->fingerprint = model_fingerprint(dir);
  return p;
}

at::Tensor Pipeline::encode_prompts(const std::vector<std::string>& prompts, TextLayer layer) {
  if (!tokenizer) {
    tokenizer = std::make_shared<ClipTokenizer>(ClipTokenizer::from_folder(dir + "/tokenizer"));
    LoadOptions lo;
    lo.device = device;
    lo.dtype = dtype;
    text_encoder = load_clip_text_model(dir, lo);
  }
  return sd::encode_prompts(*tokenizer, text_encoder, prompts, layer);
}

std::string Pipeline::describe() const {
  return "model " + dir + " (" + fingerprint.substr(0, 19) + "...) on " + device.str() + " in " +
         std::string(c10::toString(dtype));
}

}  // namespace dinv::sd
