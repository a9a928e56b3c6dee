// Captioned folders: ROOT/metadata.jsonl + the images it names. Every line is
// checked at open, and every image's header; pixels are decoded in get().
#include "dinv/data/captioned.h"

#include <ATen/ATen.h>

#include <filesystem>
#include <unordered_map>
#include <vector>

#include "../sd/unicode.h"
#include "dinv/core/error.h"
#include "dinv/data/codec.h"
#include "dinv/data/readers.h"
#include "dinv/io/hash.h"
#include "dinv/io/json.h"

namespace fs = std::filesystem;

namespace dinv::data {
namespace {

std::string size_text(std::int64_t h, std::int64_t w) { return std::to_string(w) + "x" + std::to_string(h); }

// A file_name must stay inside ROOT: relative, no "..", something left.
void check_relative(const std::string& name, const std::string& where) {
  if (name.empty()) throw IoError(where + ": \"file_name\" is empty");
  const fs::path p(name);
  if (p.is_absolute() || p.has_root_name() || p.has_root_directory())
    throw IoError(where + ": \"file_name\" '" + name + "' is an absolute path: expected a path relative to the folder");
  for (const auto& part : p)
    if (part == "..")
      throw IoError(where + ": \"file_name\" '" + name + "' leaves the folder (\"..\"): expected a path inside it");
  if (p.lexically_normal() == "." || p.lexically_normal().empty())
    throw IoError(where + ": \"file_name\" '" + name + "' names the folder itself, not an image");
}

class CaptionedFolder : public CaptionedDataset {
 public:
  explicit CaptionedFolder(const std::string& root) : root_(root) {
    std::error_code ec;
    if (!fs::is_directory(root, ec)) throw IoError("captioned folder: '" + root + "' is not a folder (missing?)");
    const fs::path metadata = fs::path(root) / "metadata.jsonl";
    metadata_ = metadata.string();
    if (!fs::exists(metadata, ec))
      throw IoError("captioned folder: '" + metadata_ +
                    "' is missing: expected one JSON object per line with "
                    "\"file_name\" (an image path relative to the folder) and \"text\" (its caption)");
    const auto bytes = read_file_bytes(metadata_);
    io::Sha256 metadata_hash, files_hash;
    metadata_hash.update(bytes.data(), bytes.size());

    std::unordered_map<std::string, std::int64_t> seen;  // normalised file_name -> line
    const std::string text(bytes.begin(), bytes.end());
    std::int64_t line_number = 0;
    for (std::size_t begin = 0; begin < text.size();) {
      std::size_t end = text.find('\n', begin);
      if (end == std::string::npos) end = text.size();
      std::string line = text.substr(begin, end - begin);
      begin = end + 1;
      ++line_number;
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.find_first_not_of(" \t") == std::string::npos) continue;  // blank lines, as JSON Lines readers skip
      const std::string where = where_line(line_number);
      sd::unicode::decode_utf8(line, where);
      const auto json = io::parse_json(line, where);
      if (!json.is_object())
        throw IoError(where + ": expected a JSON object with \"file_name\" and \"text\", found " +
                      io::JsonObject::type_name(json));
      const io::JsonObject object(json, where);
      const auto name = object.get_string("file_name");
      auto caption = object.get_string("text");
      check_relative(name, where);
      const auto key = fs::path(name).lexically_normal().generic_string();
      const auto [it, added] = seen.emplace(key, line_number);
      if (!added)
        throw IoError(where + ": \"file_name\" '" + name + "' is already listed on line " + std::to_string(it->second) +
                      ": every image is listed once");
      const auto path = (fs::path(root) / fs::path(name)).string();
      ImageSize size;
      try {
        size = read_image_size(path);
      } catch (const IoError& e) {
        throw IoError(where + ": image \"" + name + "\": " + e.what());
      }
      if (size.height != size.width)
        throw IoError(where + ": image '" + path + "' is " + size_text(size.height, size.width) +
                      ", not square: a captioned folder holds square images of one size");
      if (files_.empty()) {
        resolution_ = size.height;
      } else if (size.height != resolution_) {
        throw IoError(where + ": image '" + path + "' is " + size_text(size.height, size.width) + ", but '" +
                      files_.front() + "' (line " + std::to_string(lines_.front()) + ") is " +
                      size_text(resolution_, resolution_) + ": a captioned folder holds images of one size");
      }
      const std::string entry = key + '\0' + std::to_string(fs::file_size(path, ec)) + '\n';
      files_hash.update(entry);
      files_.push_back(path);
      texts_.push_back(std::move(caption));
      lines_.push_back(line_number);
    }
    if (files_.empty())
      throw IoError("captioned folder: '" + metadata_ + "' lists no images (" + std::to_string(line_number) +
                    " lines, none with an image): the corpus is empty");
    fingerprint_ = "captioned:n=" + std::to_string(files_.size()) + ":" + size_text(resolution_, resolution_) +
                   ":metadata=" + metadata_hash.hex_digest().substr(0, 16) +
                   ":files=" + files_hash.hex_digest().substr(0, 16);
  }

  std::int64_t size() const override { return static_cast<std::int64_t>(files_.size()); }

  CaptionedExample get(std::int64_t index) const override {
    if (index < 0 || index >= size()) throw Error(describe() + ": index " + std::to_string(index) + " out of range");
    at::Tensor image;
    try {
      image = decode_image_file(files_[index]);
    } catch (const IoError& e) {
      throw IoError(where_line(lines_[index]) + ": " + e.what());
    }
    if (image.size(0) != resolution_ || image.size(1) != resolution_)
      throw IoError(where_line(lines_[index]) + ": image '" + files_[index] + "' decodes to " +
                    size_text(image.size(0), image.size(1)) + ", its header said " +
                    size_text(resolution_, resolution_) + " (changed since the folder was opened?)");
    return {image, texts_[index]};
  }

  std::int64_t resolution() const override { return resolution_; }
  std::string fingerprint() const override { return fingerprint_; }
  std::string describe() const override {
    const bool slash = !root_.empty() && root_.back() == '/';
    return "captioned folder " + root_ + (slash ? "" : "/") + " (" + std::to_string(files_.size()) + " images, " +
           size_text(resolution_, resolution_) + ")";
  }

 private:
  std::string where_line(std::int64_t line) const { return "'" + metadata_ + "' line " + std::to_string(line); }

  std::string root_, metadata_, fingerprint_;
  std::int64_t resolution_ = 0;
  std::vector<std::string> files_, texts_;
  std::vector<std::int64_t> lines_;
};

}  // namespace

std::shared_ptr<const CaptionedDataset> open_captioned(const std::string& root) {
  return std::make_shared<CaptionedFolder>(root);
}

}  // namespace dinv::data
