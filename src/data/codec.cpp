// libpng / libjpeg report errors by longjmp: each decoder keeps every object
// with a destructor outside the setjmp region and turns the library's message
// into an IoError after the jump.
#include "dinv/data/codec.h"

#include <ATen/ATen.h>
#include <jpeglib.h>
#include <jerror.h>
#include <png.h>

#include <csetjmp>
#include <cstdio>
#include <cstring>

#include "dinv/core/error.h"
#include "dinv/data/readers.h"

namespace dinv::data {
namespace {

struct PngReadState {
  const std::vector<std::uint8_t>* bytes;
  std::size_t offset;
  char message[256];
};

void png_read_from_memory(png_structp png, png_bytep out, png_size_t length) {
  auto* state = static_cast<PngReadState*>(png_get_io_ptr(png));
  if (state->offset + length > state->bytes->size()) png_error(png, "unexpected end of data (truncated file?)");
  std::memcpy(out, state->bytes->data() + state->offset, length);
  state->offset += length;
}

void png_error_to_state(png_structp png, png_const_charp message) {
  auto* state = static_cast<PngReadState*>(png_get_error_ptr(png));
  std::snprintf(state->message, sizeof state->message, "%s", message);
  png_longjmp(png, 1);
}
void png_ignore_warning(png_structp, png_const_charp) {}

struct JpegError {
  jpeg_error_mgr mgr;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

[[noreturn]] void jpeg_error_exit(j_common_ptr info) {
  auto* err = reinterpret_cast<JpegError*>(info->err);
  (*info->err->format_message)(info, err->message);
  std::longjmp(err->jump, 1);
}

// libjpeg reports damaged data as warnings and decodes on (a truncated file
// gets grey rows after a fake end-of-image marker). Pillow refuses such
// files; so do we: the warnings about missing or corrupt data are errors.
// Others (an unknown JFIF revision, extraneous bytes between markers, which
// cameras write) stay warnings and are ignored, as Pillow ignores them.
void jpeg_emit_message(j_common_ptr info, int level) {
  if (level != -1) return;  // trace messages
  switch (info->err->msg_code) {
    case JWRN_JPEG_EOF:           // Premature end of JPEG file
    case JWRN_HIT_MARKER:         // Corrupt JPEG data: premature end of data segment
    case JWRN_HUFF_BAD_CODE:      // Corrupt JPEG data: bad Huffman code
    case JWRN_MUST_RESYNC:        // Corrupt JPEG data: found marker instead of RST
    case JWRN_NOT_SEQUENTIAL:     // Invalid SOS parameters for sequential JPEG
    case JWRN_BOGUS_PROGRESSION:  // Inconsistent progression sequence
      jpeg_error_exit(info);
    default:
      info->err->num_warnings++;
  }
}

}  // namespace

namespace {

// The decoders proper: with `header` set they stop after the header (sizes
// checked against the caps), fill it in and return an undefined tensor.
at::Tensor png_decode(const std::vector<std::uint8_t>& bytes, const std::string& name, ImageSize* header) {
  if (bytes.size() < 8 || png_sig_cmp(bytes.data(), 0, 8) != 0)
    throw IoError("'" + name + "': not a PNG file (bad signature in bytes 0..7)");
  PngReadState state{&bytes, 8, {0}};
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &state, png_error_to_state, png_ignore_warning);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  if (!info) throw IoError("'" + name + "': libpng could not allocate its state");
  at::Tensor image;             // declared before setjmp: survives the jump
  std::vector<png_bytep> rows;  // likewise (a longjmp skips destructors: fuzz_image found it leaking)
  png_uint_32 width = 0, height = 0;
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    throw IoError("'" + name + "': PNG decoding failed: " + std::string(state.message));
  }
  png_set_read_fn(png, &state, png_read_from_memory);
  png_set_sig_bytes(png, 8);
  // Header sizes are checked before anything is allocated for them.
  png_set_user_limits(png, static_cast<png_uint_32>(kMaxImageSide), static_cast<png_uint_32>(kMaxImageSide));
  png_set_chunk_malloc_max(png, 64u << 20);
  png_read_info(png, info);
  width = png_get_image_width(png, info);
  height = png_get_image_height(png, info);
  if (std::uint64_t(width) * height > kMaxImagePixels) {
    std::snprintf(state.message, sizeof state.message, "%ux%u pixels, more than the %llu dinv decodes",
                  static_cast<unsigned>(width), static_cast<unsigned>(height),
                  static_cast<unsigned long long>(kMaxImagePixels));
    png_longjmp(png, 1);
  }
  if (header) {
    *header = {static_cast<std::int64_t>(height), static_cast<std::int64_t>(width)};
    png_destroy_read_struct(&png, &info, nullptr);
    return image;
  }
  const int color = png_get_color_type(png, info);
  // Pillow's convert("RGB"): palette and gray expanded, alpha dropped, 16 -> 8 bits by the high byte.
  if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color == PNG_COLOR_TYPE_GRAY && png_get_bit_depth(png, info) < 8) png_set_expand_gray_1_2_4_to_8(png);
  if (png_get_bit_depth(png, info) == 16) png_set_strip_16(png);
  if (color & PNG_COLOR_MASK_ALPHA) png_set_strip_alpha(png);
  if (color == PNG_COLOR_TYPE_GRAY || color == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  if (png_get_rowbytes(png, info) != width * 3) png_error(png, "unexpected row size after conversion to RGB");
  image = at::empty({static_cast<std::int64_t>(height), static_cast<std::int64_t>(width), 3}, at::kByte);
  rows.resize(height);
  for (png_uint_32 y = 0; y < height; ++y) rows[y] = image.data_ptr<std::uint8_t>() + std::size_t(y) * width * 3;
  png_read_image(png, rows.data());
  png_read_end(png, nullptr);
  png_destroy_read_struct(&png, &info, nullptr);
  return image;
}

at::Tensor jpeg_decode(const std::vector<std::uint8_t>& bytes, const std::string& name, ImageSize* header) {
  jpeg_decompress_struct info;
  JpegError err;
  info.err = jpeg_std_error(&err.mgr);
  err.mgr.error_exit = jpeg_error_exit;
  err.mgr.emit_message = jpeg_emit_message;
  at::Tensor image;
  if (setjmp(err.jump)) {
    jpeg_destroy_decompress(&info);
    throw IoError("'" + name + "': JPEG decoding failed: " + std::string(err.message));
  }
  jpeg_create_decompress(&info);
  jpeg_mem_src(&info, bytes.data(), static_cast<unsigned long>(bytes.size()));
  jpeg_read_header(&info, TRUE);
  // Sizes from the header, before start_decompress allocates for them.
  if (std::uint64_t(info.image_width) * info.image_height > kMaxImagePixels || info.image_width > kMaxImageSide ||
      info.image_height > kMaxImageSide) {
    std::snprintf(err.message, sizeof err.message, "%ux%u pixels, more than the %lldx%lld (%llu pixels) dinv decodes",
                  static_cast<unsigned>(info.image_width), static_cast<unsigned>(info.image_height),
                  static_cast<long long>(kMaxImageSide), static_cast<long long>(kMaxImageSide),
                  static_cast<unsigned long long>(kMaxImagePixels));
    std::longjmp(err.jump, 1);
  }
  if (info.jpeg_color_space == JCS_CMYK || info.jpeg_color_space == JCS_YCCK) {
    std::snprintf(err.message, sizeof err.message, "CMYK JPEG is not supported, expected RGB/YCbCr or grayscale");
    std::longjmp(err.jump, 1);
  }
  if (header) {
    *header = {static_cast<std::int64_t>(info.image_height), static_cast<std::int64_t>(info.image_width)};
    jpeg_destroy_decompress(&info);
    return image;
  }
  info.out_color_space = JCS_RGB;  // gray is replicated, as Pillow's L -> RGB
  info.dct_method = JDCT_ISLOW;
  info.do_fancy_upsampling = TRUE;
  jpeg_start_decompress(&info);
  image = at::empty({static_cast<std::int64_t>(info.output_height), static_cast<std::int64_t>(info.output_width), 3},
                    at::kByte);
  while (info.output_scanline < info.output_height) {
    JSAMPROW row = image.data_ptr<std::uint8_t>() + std::size_t(info.output_scanline) * info.output_width * 3;
    jpeg_read_scanlines(&info, &row, 1);
  }
  jpeg_finish_decompress(&info);
  jpeg_destroy_decompress(&info);
  return image;
}

// By signature.
at::Tensor decode_file(const std::string& path, ImageSize* header) {
  const auto bytes = read_file_bytes(path);
  if (bytes.size() >= 8 && png_sig_cmp(bytes.data(), 0, 8) == 0) return png_decode(bytes, path, header);
  if (bytes.size() >= 3 && bytes[0] == 0xFF && bytes[1] == 0xD8 && bytes[2] == 0xFF)
    return jpeg_decode(bytes, path, header);
  throw IoError("'" + path + "': neither PNG nor JPEG (unrecognised signature in the first bytes, " +
                std::to_string(bytes.size()) + " bytes in the file)");
}

}  // namespace

at::Tensor decode_png(const std::vector<std::uint8_t>& bytes, const std::string& name) {
  return png_decode(bytes, name, nullptr);
}

at::Tensor decode_jpeg(const std::vector<std::uint8_t>& bytes, const std::string& name) {
  return jpeg_decode(bytes, name, nullptr);
}

at::Tensor decode_image_file(const std::string& path) { return decode_file(path, nullptr); }

ImageSize read_image_size(const std::string& path) {
  ImageSize size;
  decode_file(path, &size);
  return size;
}

void write_png(const std::string& path, const at::Tensor& image) {
  auto img = image.contiguous();
  if (img.dim() != 3 || img.size(2) != 3 || img.scalar_type() != at::kByte)
    throw IoError("write_png '" + path + "': expected uint8 [H, W, 3], found " + c10::str(img.sizes()));
  std::FILE* file = std::fopen(path.c_str(), "wb");
  if (!file) throw IoError("cannot open '" + path + "' for writing");
  PngReadState state{nullptr, 0, {0}};
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &state, png_error_to_state, png_ignore_warning);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  if (!info) {
    std::fclose(file);
    throw IoError("'" + path + "': libpng could not allocate its state");
  }
  const auto height = static_cast<png_uint_32>(img.size(0)), width = static_cast<png_uint_32>(img.size(1));
  std::vector<png_bytep> rows(height);
  for (png_uint_32 y = 0; y < height; ++y) rows[y] = img.data_ptr<std::uint8_t>() + std::size_t(y) * width * 3;
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    std::fclose(file);
    throw IoError("'" + path + "': PNG encoding failed: " + std::string(state.message));
  }
  png_init_io(png, file);
  png_set_IHDR(png, info, width, height, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  png_write_image(png, rows.data());
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  if (std::fclose(file) != 0) throw IoError("error closing '" + path + "' after writing");
}

}  // namespace dinv::data
