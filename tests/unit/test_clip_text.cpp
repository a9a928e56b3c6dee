// CLIPTextModel loading on a tiny config: round trip through safetensors, both
// weight-name layouts, and every bad input naming the file, tensor and shapes.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <functional>

#include <ATen/ATen.h>

#include "dinv/core/error.h"
#include "dinv/io/safetensors.h"
#include "dinv/sd/clip_text.h"
#include "unit/error_message.h"

namespace dinv::sd {
namespace {

ClipTextConfig tiny_config() {
  ClipTextConfig c;
  c.vocab_size = 50;
  c.encoder.hidden_size = 16;
  c.encoder.intermediate_size = 24;
  c.encoder.num_hidden_layers = 2;
  c.encoder.num_attention_heads = 4;
  c.max_position_embeddings = 8;
  return c;
}

class TinyTextEncoder : public ::testing::Test {
 protected:
  void SetUp() override {
    char name[] = "/tmp/dinv_clip_XXXXXX";  // POSIX: libtorch.so shadows std::filesystem
    ASSERT_NE(::mkdtemp(name), nullptr);
    dir_ = name;
    model_ = ClipTextModel(tiny_config());
    for (auto& p : model_->named_parameters()) weights_[p.key()] = p.value().detach().clone();
    std::ofstream(dir_ + "/config.json") << tiny_config().to_json().dump();
  }
  void TearDown() override {
    for (const char* f : {"config.json", "model.safetensors", "pytorch_model.bin"})
      std::remove((dir_ + "/" + f).c_str());
    ::rmdir(dir_.c_str());
  }
  void save(const std::map<std::string, at::Tensor>& w) { io::write_safetensors(dir_ + "/model.safetensors", w); }

  std::string dir_;
  ClipTextModel model_{nullptr};
  std::map<std::string, at::Tensor> weights_;
};

TEST_F(TinyTextEncoder, RoundTripGivesTheSameOutputs) {
  save(weights_);
  ClipTextModel loaded = load_clip_text_model(dir_, {}, ".");
  const at::Tensor ids = at::randint(0, 50, {3, 8}, at::kLong);
  torch::NoGradGuard no_grad;
  const ClipTextOutput a = model_->forward(ids), b = loaded->forward(ids);
  EXPECT_TRUE(at::equal(a.last_hidden_state, b.last_hidden_state));
  ASSERT_EQ(b.hidden_states.size(), 3u);  // embeddings + 2 layers
  EXPECT_TRUE(at::equal(a.penultimate(), b.penultimate()));
  EXPECT_EQ(b.last_hidden_state.sizes(), (std::vector<std::int64_t>{3, 8, 16}));
}

TEST_F(TinyTextEncoder, BareNamesAsTransformers5SavesThem) {
  std::map<std::string, at::Tensor> bare;
  for (const auto& [k, v] : weights_) bare[k.substr(std::string("text_model.").size())] = v;
  bare["embeddings.position_ids"] = at::arange(8, at::kLong).unsqueeze(0);  // ignored, as transformers does
  save(bare);
  EXPECT_NO_THROW(load_clip_text_model(dir_, {}, "."));
}

TEST_F(TinyTextEncoder, HalfPrecisionVariantLoadsIntoFloat) {
  std::map<std::string, at::Tensor> half;
  for (const auto& [k, v] : weights_) half[k] = v.to(at::kHalf);
  io::write_safetensors(dir_ + "/model.fp16.safetensors", half);
  LoadOptions options;
  options.variant = "fp16";
  ClipTextModel loaded = load_clip_text_model(dir_, options, ".");
  std::remove((dir_ + "/model.fp16.safetensors").c_str());
  const at::Tensor w = loaded->named_parameters()["text_model.encoder.layers.1.mlp.fc1.weight"];
  EXPECT_EQ(w.scalar_type(), at::kFloat);
  EXPECT_TRUE(at::equal(w, half["text_model.encoder.layers.1.mlp.fc1.weight"].to(at::kFloat)));
}

TEST_F(TinyTextEncoder, MissingTensorIsNamed) {
  weights_.erase("text_model.encoder.layers.1.mlp.fc2.bias");
  save(weights_);
  const std::string msg = dinv::testing::error_message_of<ModelError>([&] { load_clip_text_model(dir_, {}, "."); });
  EXPECT_NE(msg.find("model.safetensors"), std::string::npos) << msg;
  EXPECT_NE(msg.find("text_model.encoder.layers.1.mlp.fc2.bias"), std::string::npos) << msg;
}

TEST_F(TinyTextEncoder, WrongShapeNamesExpectedAndFound) {
  weights_["text_model.encoder.layers.0.self_attn.q_proj.weight"] = at::zeros({16, 12});
  save(weights_);
  const std::string msg = dinv::testing::error_message_of<ModelError>([&] { load_clip_text_model(dir_, {}, "."); });
  EXPECT_NE(msg.find("q_proj.weight"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[16, 12]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[16, 16]"), std::string::npos) << msg;
}

TEST_F(TinyTextEncoder, UnexpectedTensorIsNamed) {
  weights_["text_model.encoder.layers.2.mlp.fc1.weight"] = at::zeros({24, 16});
  save(weights_);
  const std::string msg = dinv::testing::error_message_of<ModelError>([&] { load_clip_text_model(dir_, {}, "."); });
  EXPECT_NE(msg.find("unexpected"), std::string::npos) << msg;
  EXPECT_NE(msg.find("layers.2.mlp.fc1.weight"), std::string::npos) << msg;
}

TEST_F(TinyTextEncoder, MissingWeightsAndPickleFiles) {
  const std::string none = dinv::testing::error_message_of<Error>([&] { load_clip_text_model(dir_, {}, "."); });
  EXPECT_NE(none.find("model.safetensors"), std::string::npos) << none;
  std::ofstream(dir_ + "/pytorch_model.bin") << "not loaded";
  const std::string msg = dinv::testing::error_message_of<Error>([&] { load_clip_text_model(dir_, {}, "."); });
  EXPECT_NE(msg.find("pickle"), std::string::npos) << msg;
  EXPECT_NE(msg.find("model.safetensors"), std::string::npos) << msg;
}

TEST_F(TinyTextEncoder, BadConfigValuesNameTheKey) {
  io::Json j = tiny_config().to_json();
  j["hidden_act"] = "relu";
  EXPECT_NE(dinv::testing::error_message_of<ModelError>([&] {
              ClipTextConfig::from_json(j, "te/config.json");
            }).find("'hidden_act'"),
            std::string::npos);
  j = tiny_config().to_json();
  j["num_attention_heads"] = 5;
  EXPECT_NE(dinv::testing::error_message_of<ModelError>([&] {
              ClipTextConfig::from_json(j, "te/config.json");
            }).find("num_attention_heads"),
            std::string::npos);
}

TEST_F(TinyTextEncoder, BadInputIdsAreRefused) {
  torch::NoGradGuard no_grad;
  EXPECT_NE(dinv::testing::error_message_of<ModelError>([&] {
              model_->forward(at::full({1, 4}, 50, at::kLong));
            }).find("[0, 50)"),
            std::string::npos);
  EXPECT_NE(dinv::testing::error_message_of<ModelError>([&] {
              model_->forward(at::zeros({1, 9}, at::kLong));
            }).find("8 positions"),
            std::string::npos);
  EXPECT_THROW(model_->forward(at::zeros({1, 4})), ModelError);
}

}  // namespace
}  // namespace dinv::sd
