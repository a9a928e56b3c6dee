#include <gtest/gtest.h>

#include <cstdint>
#include <fstream>
#include <sstream>

#include <ATen/ATen.h>

#include "dinv/core/error.h"
#include "dinv/io/json.h"
#include "dinv/io/safetensors.h"

namespace dinv::io {
namespace {

std::string temp(const std::string& name) { return ::testing::TempDir() + "/st_" + name; }

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A file from a raw header and data section (the header length is computed).
std::string raw_file(const std::string& name, const std::string& header, const std::string& data,
                     std::int64_t length_override = -1) {
  const std::string path = temp(name);
  std::ofstream out(path, std::ios::binary);
  std::uint64_t n = length_override >= 0 ? static_cast<std::uint64_t>(length_override) : header.size();
  for (int i = 0; i < 8; ++i) out.put(static_cast<char>((n >> (8 * i)) & 0xff));
  out << header << data;
  return path;
}

std::string open_error(const std::string& path) {
  try {
    SafetensorsFile f(path);
  } catch (const IoError& e) {
    return e.what();
  }
  ADD_FAILURE() << "no IoError for " << path;
  return "";
}

TEST(Safetensors, RoundTripAllDtypesAndMetadata) {
  std::map<std::string, at::Tensor> t;
  t["f32"] = at::randn({3, 4});
  t["f16"] = at::randn({5}).to(at::kHalf);
  t["bf16"] = at::randn({2, 2, 2}).to(at::kBFloat16);
  t["f64"] = at::randn({2}, at::kDouble);
  t["i64"] = at::arange(7, at::kLong);
  t["i32"] = at::arange(3, at::kInt);
  t["u8"] = at::arange(11, at::kByte);
  t["bool"] = at::arange(5) % 2 == 0;
  t["scalar"] = at::scalar_tensor(2.5);
  t["empty"] = at::empty({0, 3});
  t["noncontig"] = at::randn({4, 3}).t();
  const std::string path = temp("roundtrip.safetensors");
  write_safetensors(path, t, {{"format", "pt"}, {"who", "dinv"}});

  SafetensorsFile f(path);
  EXPECT_EQ(f.path(), path);
  EXPECT_EQ(f.tensors().size(), t.size());
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(f.metadata().at("who"), "dinv");
  for (const auto& [name, want] : t) {
    ASSERT_TRUE(f.contains(name)) << name;
    auto got = f.tensor(name);
    EXPECT_EQ(got.scalar_type(), want.scalar_type()) << name;
    EXPECT_EQ(got.sizes(), want.sizes()) << name;
    EXPECT_TRUE(at::equal(got, want.contiguous())) << name;
  }
  EXPECT_FALSE(f.contains("nope"));
  EXPECT_THROW(f.info("nope"), IoError);
  // File order is data order; ranges tile the data section.
  std::uint64_t pos = 0;
  for (const auto& ti : f.tensors()) {
    EXPECT_EQ(ti.begin, pos);
    pos = ti.end;
  }
  // Header padded so that data starts 8-byte aligned.
  std::string bytes = slurp(path);
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[i]);
  EXPECT_EQ((8 + n) % 8, 0u);
  EXPECT_EQ(bytes.size(), 8 + n + pos);
}

TEST(Safetensors, EmptyFileLikeReference) {
  const std::string path = temp("empty.safetensors");
  write_safetensors(path, {});
  EXPECT_EQ(slurp(path), std::string("\x08\0\0\0\0\0\0\0{}      ", 16));
  SafetensorsFile f(path);
  EXPECT_TRUE(f.tensors().empty());
  EXPECT_TRUE(read_safetensors(path).empty());
}

TEST(Safetensors, ReferenceOrderAndLayout) {
  // Same layout as huggingface/safetensors: larger dtypes first, then by name.
  std::map<std::string, at::Tensor> t{
      {"b", at::ones({3}, at::kByte)}, {"a", at::ones({2})}, {"c", at::zeros({1}, at::kHalf)}};
  const std::string path = temp("order.safetensors");
  write_safetensors(path, t);
  std::string bytes = slurp(path);
  const std::string header =
      R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"c":{"dtype":"F16","shape":[1],"data_offsets":[8,10]},"b":{"dtype":"U8","shape":[3],"data_offsets":[10,13]}})";
  std::string padded = header + std::string((8 - header.size() % 8) % 8, ' ');
  EXPECT_EQ(bytes.substr(8, padded.size()), padded);
}

TEST(Safetensors, TensorsViewTheMappingAndOutliveTheFile) {
  const std::string path = temp("view.safetensors");
  auto want = at::randn({64, 64});
  write_safetensors(path, {{"w", want}});
  at::Tensor a, b;
  {
    SafetensorsFile f(path);
    a = f.tensor("w");
    b = f.tensor("w");
    EXPECT_EQ(a.data_ptr(), b.data_ptr());  // no copy: both view the mapping
  }
  EXPECT_TRUE(at::equal(a, want));  // mapping kept alive by the tensors
  a.add_(1);                        // copy-on-write: the file is not changed
  EXPECT_TRUE(at::equal(read_safetensors(path).at("w"), want));
}

TEST(Safetensors, ReadInto) {
  const std::string path = temp("into.safetensors");
  auto want = at::randn({5, 7});
  write_safetensors(path, {{"w", want}});
  SafetensorsFile f(path);
  auto dst = at::empty({5, 7});
  f.read_into("w", dst);
  EXPECT_TRUE(at::equal(dst, want));
  auto strided = at::empty({7, 5}).t();
  f.read_into("w", strided);
  EXPECT_TRUE(at::equal(strided, want));
  auto wrong_shape = at::empty({7, 5});
  try {
    f.read_into("w", wrong_shape);
    FAIL();
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("[5, 7]"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("[7, 5]"), std::string::npos) << e.what();
  }
  auto wrong_dtype = at::empty({5, 7}, at::kHalf);
  EXPECT_THROW(f.read_into("w", wrong_dtype), IoError);
}

TEST(Safetensors, BadInputs) {
  const std::string ok = R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  const std::string data8(8, '\0');
  struct Case {
    std::string name, header, data;
    std::int64_t length;
    std::string expect;
  };
  const std::vector<Case> cases = {
      {"valid", ok, data8, -1, ""},
      {"header_too_long", ok, data8, 1000, "larger than the file"},
      {"header_huge", ok, data8, 200'000'000, "100 MB"},
      {"bad_json", R"({"w":{"dtype":"F32",)", data8, -1, "not valid JSON"},
      {"not_object", R"([1,2,3])", "", -1, "does not start with '{'"},
      {"unknown_dtype", R"({"w":{"dtype":"F7","shape":[2],"data_offsets":[0,8]}})", data8, -1,
       "unsupported dtype 'F7'"},
      {"missing_shape", R"({"w":{"dtype":"F32","data_offsets":[0,8]}})", data8, -1, "missing 'shape'"},
      {"negative_shape", R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", data8, -1, "non-negative"},
      {"offsets_out_of_range", R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", data8, -1,
       "outside the data section"},
      {"offsets_reversed", R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", data8, -1,
       "end before they begin"},
      {"offsets_not_pair", R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", data8, -1,
       "two non-negative integers"},
      {"shape_size_mismatch", R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", data8, -1, "needs 12 bytes"},
      {"overlap",
       R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
       data8, -1, "overlap"},
      {"gap", R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", data8, -1, "gap of 4 bytes"},
      {"trailing", ok, data8 + "xxxx", -1, "trailing"},
      {"truncated_data", ok, "\0\0\0\0", -1, "outside the data section"},
      {"duplicate",
       R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
       data8, -1, "appears twice"},
      {"bad_metadata", R"({"__metadata__":{"a":1},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", data8, -1,
       "__metadata__ key 'a'"},
      {"huge_shape", R"({"w":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,8]}})", data8,
       -1, "too large"},
  };
  for (const auto& c : cases) {
    const std::string path = raw_file(c.name, c.header, c.data, c.length);
    if (c.expect.empty()) {
      EXPECT_NO_THROW(SafetensorsFile f(path)) << c.name;
      continue;
    }
    const std::string msg = open_error(path);
    EXPECT_NE(msg.find(path), std::string::npos) << c.name << ": " << msg;
    EXPECT_NE(msg.find(c.expect), std::string::npos) << c.name << ": " << msg;
  }
  // Truncated below the 8-byte length.
  const std::string tiny = temp("tiny");
  std::ofstream(tiny, std::ios::binary) << "abc";
  EXPECT_NE(open_error(tiny).find("truncated"), std::string::npos);
  EXPECT_NE(open_error(temp("does_not_exist")).find("cannot open"), std::string::npos);
}

TEST(Safetensors, TruncatedRealFile) {
  const std::string path = temp("trunc_src.safetensors");
  write_safetensors(path, {{"a", at::randn({10})}, {"b", at::randn({10})}});
  std::string bytes = slurp(path);
  for (size_t cut : {size_t(4), size_t(20), bytes.size() - 1}) {
    const std::string p = temp("trunc_" + std::to_string(cut));
    std::ofstream(p, std::ios::binary) << bytes.substr(0, cut);
    EXPECT_THROW(SafetensorsFile f(p), IoError) << cut;
  }
}

TEST(Json, TypedGettersNameKeyAndType) {
  Json j = parse_json(R"({"a": 3, "b": "x", "c": [1, 2], "d": true, "e": 2.5, "n": null, "o": {"k": 1}})", "t.json");
  JsonObject o(j, "t.json");
  EXPECT_EQ(o.get_int("a"), 3);
  EXPECT_EQ(o.get_string("b"), "x");
  EXPECT_EQ(o.get_int_list("c"), (std::vector<std::int64_t>{1, 2}));
  EXPECT_TRUE(o.get_bool("d"));
  EXPECT_DOUBLE_EQ(o.get_double("e"), 2.5);
  EXPECT_DOUBLE_EQ(o.get_double("a"), 3.0);
  EXPECT_EQ(o.get_int("n", 7), 7);
  EXPECT_EQ(o.get_int("missing", 9), 9);
  EXPECT_EQ(o.object("o").get_int("k"), 1);
  try {
    o.get_int("b");
    FAIL();
  } catch (const IoError& e) {
    EXPECT_STREQ(e.what(), "t.json: key 'b': expected an integer, found a string (\"x\")");
  }
  try {
    o.get_string("missing");
    FAIL();
  } catch (const IoError& e) {
    EXPECT_STREQ(e.what(), "t.json: missing key 'missing'");
  }
  EXPECT_THROW(o.get_int("e"), IoError);
  EXPECT_THROW(parse_json("{", "x.json"), IoError);
  EXPECT_EQ(canonical_json(parse_json(R"({"b": 1, "a": [1.5, "x"]})", "y")), R"({"a":[1.5,"x"],"b":1})");
}

TEST(Json, FileErrorsNameTheFile) {
  const std::string path = temp("bad.json");
  std::ofstream(path) << "{\"a\": ";
  try {
    read_json_file(path);
    FAIL();
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find(path + ": invalid JSON"), std::string::npos) << e.what();
  }
  EXPECT_THROW(read_json_file(temp("nope.json")), IoError);
  write_json_file(path, Json{{"x", 1}});
  EXPECT_EQ(read_json_file(path)["x"], 1);
}

}  // namespace
}  // namespace dinv::io
