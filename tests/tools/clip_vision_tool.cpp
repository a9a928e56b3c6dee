// Test driver for the CLIP vision tower and its preprocessing: the parity
// tests feed it pixel values / image files and compare with transformers.
//   dinv_clip_vision encode MODEL_DIR IN.safetensors OUT.safetensors
//     IN: pixel_values [B, C, S, S]; OUT: image_embeds, last_hidden_state
//   dinv_clip_vision preprocess PREPROCESSOR_CONFIG.json OUT.safetensors IMAGE...
//     OUT: "0", "1", ...: each image file's pixel values [3, H, W]
//   dinv_clip_vision features MODEL_DIR OUT.safetensors IMAGE...
//     OUT: image_embeds [N, P] of the files, preprocessed with
//     MODEL_DIR/preprocessor_config.json
//   dinv_clip_vision bench MODEL_DIR BATCH REPEAT
//     prints {"images_per_s": ...}: forward passes on random pixel values
//     (one warm-up pass, model loading excluded)
#include <chrono>
#include <iostream>
#include <map>
#include <vector>

#include <ATen/ATen.h>

#include "dinv/core/error.h"
#include "dinv/data/codec.h"
#include "dinv/io/safetensors.h"
#include "dinv/sd/clip_vision.h"

using namespace dinv;

int main(int argc, char** argv) {
  try {
    const std::string cmd = argc > 1 ? argv[1] : "";
    torch::NoGradGuard no_grad;
    if (cmd == "encode" && argc == 5) {
      sd::ClipVisionModel model = sd::load_clip_vision_model(argv[2]);
      const io::SafetensorsFile in(argv[3]);
      const sd::ClipVisionOutput out = model->forward(in.tensor("pixel_values"));
      io::write_safetensors(argv[4],
                            {{"image_embeds", out.image_embeds}, {"last_hidden_state", out.last_hidden_state}});
      return 0;
    }
    if (cmd == "preprocess" && argc >= 4) {
      const auto processor = sd::ClipImageProcessor::from_file(argv[2]);
      std::map<std::string, at::Tensor> out;
      for (int i = 4; i < argc; ++i) out[std::to_string(i - 4)] = processor(data::decode_image_file(argv[i]));
      io::write_safetensors(argv[3], out);
      return 0;
    }
    if (cmd == "features" && argc >= 4) {
      sd::ClipVisionModel model = sd::load_clip_vision_model(argv[2]);
      const auto processor = sd::ClipImageProcessor::from_file(std::string(argv[2]) + "/preprocessor_config.json");
      std::vector<at::Tensor> pixels;
      for (int i = 4; i < argc; ++i) pixels.push_back(processor(data::decode_image_file(argv[i])));
      io::write_safetensors(argv[3], {{"image_embeds", model->forward(at::stack(pixels)).image_embeds}});
      return 0;
    }
    if (cmd == "bench" && argc == 5) {
      sd::ClipVisionModel model = sd::load_clip_vision_model(argv[2]);
      const auto& c = model->config();
      const std::int64_t batch = std::stoll(argv[3]), repeat = std::stoll(argv[4]);
      const at::Tensor pixels = at::randn({batch, c.num_channels, c.image_size, c.image_size});
      model->forward(pixels);
      const auto start = std::chrono::steady_clock::now();
      for (std::int64_t i = 0; i < repeat; ++i) model->forward(pixels);
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      std::cout << "{\"images_per_s\": " << static_cast<double>(batch * repeat) / s << "}" << std::endl;
      return 0;
    }
    std::cerr << "usage: dinv_clip_vision encode MODEL_DIR IN.safetensors OUT.safetensors\n"
                 "       dinv_clip_vision preprocess PREPROCESSOR_CONFIG.json OUT.safetensors IMAGE...\n"
                 "       dinv_clip_vision features MODEL_DIR OUT.safetensors IMAGE...\n"
                 "       dinv_clip_vision bench MODEL_DIR BATCH REPEAT\n";
    return 2;
  } catch (const dinv::Error& e) {
    std::cerr << e.what() << "\n";
    return 1;
  }
}
