// CLIP tokenizer on a tiny hand-made folder: special tokens, padding,
// truncation, and every kind of bad input naming what is wrong.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>

#include "dinv/core/error.h"
#include "dinv/sd/tokenizer.h"
#include "unit/error_message.h"

namespace dinv::sd {
namespace {

class TinyTokenizer : public ::testing::Test {
 protected:
  void SetUp() override {
    // POSIX, not std::filesystem: libtorch.so exports broken copies of its symbols.
    char name[] = "/tmp/dinv_tok_XXXXXX";
    ASSERT_NE(::mkdtemp(name), nullptr);
    dir_ = name;
    write("vocab.json",
          R"({"a": 0, "b": 1, "a</w>": 2, "b</w>": 3, "ab</w>": 4, "<|startoftext|>": 5, "<|endoftext|>": 6,)"
          R"( "!": 7, "!</w>": 8})");
    write("merges.txt", "#version: 0.2\na b</w>\n");
    write("tokenizer_config.json", R"({"model_max_length": 6, "pad_token": "<|endoftext|>"})");
  }
  void TearDown() override {
    for (const char* f : kFiles) std::remove((dir_ + "/" + f).c_str());
    ::rmdir(dir_.c_str());
  }
  void write(const std::string& name, const std::string& text) { std::ofstream(dir_ + "/" + name) << text; }
  void remove(const std::string& name) { std::remove((dir_ + "/" + name).c_str()); }
  const std::string& dir() const { return dir_; }

  static constexpr const char* kFiles[] = {"vocab.json", "merges.txt", "tokenizer_config.json"};

  std::string dir_;
};

TEST_F(TinyTokenizer, MergesPadsAndTruncates) {
  const ClipTokenizer tok = ClipTokenizer::from_folder(dir());
  EXPECT_EQ(tok.encode_text("AB ba!"), (std::vector<std::int64_t>{4, 1, 2, 8}));
  TokenizedPrompt t = tok.encode("ab");
  EXPECT_EQ(t.ids, (std::vector<std::int64_t>{5, 4, 6, 6, 6, 6}));
  EXPECT_EQ(t.length, 3);
  EXPECT_FALSE(t.truncated);
  t = tok.encode("ab ab ab ab ab");
  EXPECT_EQ(t.ids, (std::vector<std::int64_t>{5, 4, 4, 4, 4, 6}));
  EXPECT_TRUE(t.truncated);
  EXPECT_EQ(tok.token(4), "ab</w>");
}

TEST_F(TinyTokenizer, PadTokenOfTheFolderIsASpecialToken) {
  write("tokenizer_config.json", R"({"model_max_length": 6, "pad_token": {"content": "!"}})");
  const ClipTokenizer tok = ClipTokenizer::from_folder(dir());
  EXPECT_EQ(tok.pad_id(), 7);
  // As in transformers, the pad token in the text is matched whole, not BPE'd as "!</w>".
  EXPECT_EQ(tok.encode("ab!").ids, (std::vector<std::int64_t>{5, 4, 7, 6, 7, 7}));
  EXPECT_EQ(tok.encode_batch({"ab", "b"}).sizes(), (std::vector<std::int64_t>{2, 6}));
}

TEST_F(TinyTokenizer, MissingFilesAreNamed) {
  remove("merges.txt");
  EXPECT_NE(dinv::testing::error_message_of<IoError>([&] { ClipTokenizer::from_folder(dir()); }).find("merges.txt"),
            std::string::npos);
  remove("vocab.json");
  EXPECT_NE(dinv::testing::error_message_of<IoError>([&] { ClipTokenizer::from_folder(dir()); }).find("vocab.json"),
            std::string::npos);
  EXPECT_NE(dinv::testing::error_message_of<IoError>([&] { ClipTokenizer::from_folder(dir() + "/nope"); }).find("nope"),
            std::string::npos);
}

TEST_F(TinyTokenizer, MalformedMergeLineNamesFileAndLine) {
  write("merges.txt", "#version: 0.2\na b</w>\na b c\n");
  const std::string msg = dinv::testing::error_message_of<IoError>([&] { ClipTokenizer::from_folder(dir()); });
  EXPECT_NE(msg.find("merges.txt:3"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'a b c'"), std::string::npos) << msg;
}

TEST_F(TinyTokenizer, MergeResultMissingFromVocab) {
  write("merges.txt", "#version: 0.2\na b</w>\nb a</w>\n");
  const std::string msg = dinv::testing::error_message_of<ModelError>([&] { ClipTokenizer::from_folder(dir()); });
  EXPECT_NE(msg.find("merges.txt:3"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'ba</w>'"), std::string::npos) << msg;
}

TEST_F(TinyTokenizer, MalformedVocabAndMissingSpecialToken) {
  write("vocab.json", R"({"a": 0, "b": )");
  EXPECT_NE(dinv::testing::error_message_of<IoError>([&] { ClipTokenizer::from_folder(dir()); }).find("vocab.json"),
            std::string::npos);
  write("vocab.json", R"({"a": 0, "b": 1, "a</w>": 2, "b</w>": 3, "ab</w>": 4})");
  const std::string msg = dinv::testing::error_message_of<ModelError>([&] { ClipTokenizer::from_folder(dir()); });
  EXPECT_NE(msg.find("<|endoftext|>"), std::string::npos) << msg;
}

// Found by fuzz_tokenizer: an id of 8e18 made the id table allocate without bound.
TEST_F(TinyTokenizer, VocabularyIdsOutsideTheRangeOrRepeatedAreRefused) {
  write("vocab.json", R"({"a": 0, "b": 1, "a</w>": 2, "b</w>": 3, "ab</w>": 8888888888888888884})");
  std::string msg = dinv::testing::error_message_of<ModelError>([&] { ClipTokenizer::from_folder(dir()); });
  EXPECT_NE(msg.find("vocab.json: vocabulary token 'ab</w>' has id 8888888888888888884, outside 0..4"),
            std::string::npos)
      << msg;
  write("vocab.json", R"({"a": 0, "b": 1, "a</w>": 2, "b</w>": 3, "ab</w>": 1})");
  msg = dinv::testing::error_message_of<ModelError>([&] { ClipTokenizer::from_folder(dir()); });
  EXPECT_NE(msg.find("both have id 1"), std::string::npos) << msg;
}

TEST_F(TinyTokenizer, NonUtf8PromptNamesTheByteOffset) {
  const ClipTokenizer tok = ClipTokenizer::from_folder(dir());
  std::string msg = dinv::testing::error_message_of<IoError>([&] { tok.encode("abc\xff"); });
  EXPECT_NE(msg.find("byte offset 3"), std::string::npos) << msg;
  msg = dinv::testing::error_message_of<IoError>([&] { tok.encode("a\xc3(b"); });  // continuation byte missing
  EXPECT_NE(msg.find("byte offset 2"), std::string::npos) << msg;
  msg = dinv::testing::error_message_of<IoError>([&] { tok.encode("ab\xe2\x82"); });  // truncated sequence
  EXPECT_NE(msg.find("byte offset 2"), std::string::npos) << msg;
  msg = dinv::testing::error_message_of<IoError>([&] { tok.encode("\xc0\xaf"); });  // overlong '/'
  EXPECT_NE(msg.find("byte offset 0"), std::string::npos) << msg;
}

}  // namespace
}  // namespace dinv::sd
