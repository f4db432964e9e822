#include "instseg/data/image_io.h"

#include <torch/torch.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <vector>

#include "instseg/common/atomic_file.h"
#include "instseg/errors.h"

namespace instseg::data {
namespace {

std::vector<uchar> read_bytes(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    throw InputError(path + ": cannot read image (no such file)");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(path + ": cannot read image (cannot open file)");
  return std::vector<uchar>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

bool is_rst_or_stuffing(uchar marker) { return marker == 0x00 || (marker >= 0xD0 && marker <= 0xD7); }

// Walks the JPEG marker segments (skipping entropy-coded scan data) and says whether the stream
// reaches its end-of-image marker. libjpeg decodes a truncated file with only a warning and fills
// the missing rows with grey, so OpenCV alone would hand back a partly made-up image. Searching
// for FF D9 anywhere is not enough: an EXIF thumbnail carries its own end-of-image marker.
bool jpeg_reaches_end(const std::vector<uchar>& b) {
  const size_t n = b.size();
  size_t i = 2;  // after SOI
  while (i + 1 < n) {
    if (b[i] != 0xFF) {  // stray bytes between segments: libjpeg skips them too
      ++i;
      continue;
    }
    const uchar marker = b[i + 1];
    if (marker == 0xFF) {  // fill byte before a marker
      ++i;
      continue;
    }
    if (marker == 0xD9) return true;
    if (marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7)) {  // markers without a length
      i += 2;
      continue;
    }
    if (i + 3 >= n) return false;
    const size_t length = (static_cast<size_t>(b[i + 2]) << 8) | b[i + 3];
    if (length < 2) return false;
    i += 2 + length;
    if (marker == 0xDA) {  // start of scan: entropy-coded data runs to the next real marker
      while (i + 1 < n && !(b[i] == 0xFF && !is_rst_or_stuffing(b[i + 1]))) ++i;
    }
  }
  return false;
}

bool is_jpeg(const std::vector<uchar>& b) { return b.size() >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF; }

bool is_png(const std::vector<uchar>& b) {
  static const uchar signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  return b.size() >= 8 && std::equal(signature, signature + 8, b.begin());
}

// A complete PNG ends with its IEND chunk (possibly followed by junk some writers append).
bool png_reaches_end(const std::vector<uchar>& b) {
  static const std::string iend = "IEND";
  return std::search(b.begin(), b.end(), iend.begin(), iend.end()) != b.end();
}

uint32_t be16(const unsigned char* p) { return (uint32_t(p[0]) << 8) | p[1]; }
uint32_t le16(const unsigned char* p) { return (uint32_t(p[1]) << 8) | p[0]; }
uint32_t be32(const unsigned char* p) { return (be16(p) << 16) | be16(p + 2); }
uint32_t le32(const unsigned char* p) { return (le16(p + 2) << 16) | le16(p); }
uint32_t le24(const unsigned char* p) { return (uint32_t(p[2]) << 16) | (uint32_t(p[1]) << 8) | p[0]; }

// The first SOFn segment's height and width. Segments are walked as in jpeg_reaches_end; the
// frame header comes before the first scan.
std::optional<ImageSize> jpeg_size(const unsigned char* b, size_t n) {
  size_t i = 2;
  while (i + 3 < n) {
    if (b[i] != 0xFF) {
      ++i;
      continue;
    }
    const unsigned char marker = b[i + 1];
    if (marker == 0xFF) {
      ++i;
      continue;
    }
    if (marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7)) {
      i += 2;
      continue;
    }
    if (marker == 0xD9 || marker == 0xDA) return std::nullopt;  // a scan or the end before any frame
    const size_t length = be16(b + i + 2);
    // SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC): length, precision, height, width.
    const bool frame = marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC;
    if (frame) {
      if (i + 9 > n) return std::nullopt;
      return ImageSize{be16(b + i + 7), be16(b + i + 5)};
    }
    if (length < 2) return std::nullopt;
    i += 2 + length;
  }
  return std::nullopt;
}

std::optional<ImageSize> png_size(const unsigned char* b, size_t n) {
  // Signature, then the IHDR chunk: length 13, "IHDR", width, height (big-endian).
  if (n < 24 || std::memcmp(b + 12, "IHDR", 4) != 0) return std::nullopt;
  return ImageSize{be32(b + 16), be32(b + 20)};
}

std::optional<ImageSize> bmp_size(const unsigned char* b, size_t n) {
  if (n < 26) return std::nullopt;
  const uint32_t info_size = le32(b + 14);
  if (info_size == 12) return ImageSize{le16(b + 18), le16(b + 20)};  // OS/2 BITMAPCOREHEADER
  // BITMAPINFOHEADER and later: signed 32-bit sizes, a negative height meaning top-down rows.
  const auto width = static_cast<int32_t>(le32(b + 18)), height = static_cast<int32_t>(le32(b + 22));
  return ImageSize{std::abs(int64_t{width}), std::abs(int64_t{height})};
}

std::optional<ImageSize> webp_size(const unsigned char* b, size_t n) {
  if (n < 30) return std::nullopt;
  const unsigned char* chunk = b + 12;
  const unsigned char* data = b + 20;
  if (std::memcmp(chunk, "VP8 ", 4) == 0) {  // lossy: frame tag (3), start code 9D 01 2A, 14-bit sizes
    if (data[3] != 0x9D || data[4] != 0x01 || data[5] != 0x2A) return std::nullopt;
    return ImageSize{le16(data + 6) & 0x3FFF, le16(data + 8) & 0x3FFF};
  }
  if (std::memcmp(chunk, "VP8L", 4) == 0) {  // lossless: signature 0x2F, then 14-bit width-1, height-1
    if (data[0] != 0x2F) return std::nullopt;
    const uint32_t bits = le32(data + 1);
    return ImageSize{(bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1};
  }
  if (std::memcmp(chunk, "VP8X", 4) == 0) {  // extended: flags (4), 24-bit canvas width-1, height-1
    return ImageSize{int64_t{le24(data + 4)} + 1, int64_t{le24(data + 7)} + 1};
  }
  return std::nullopt;
}

// ImageWidth (256) and ImageLength (257) of the first IFD, the page OpenCV decodes. BigTIFF and
// other oddities give nullopt.
std::optional<ImageSize> tiff_size(const unsigned char* b, size_t n) {
  const bool little = b[0] == 'I';
  const auto u16 = [&](size_t at) { return little ? le16(b + at) : be16(b + at); };
  const auto u32 = [&](size_t at) { return little ? le32(b + at) : be32(b + at); };
  if (n < 8) return std::nullopt;
  const size_t ifd = u32(4);
  if (ifd > n || n - ifd < 2) return std::nullopt;
  const size_t entries = u16(ifd);
  int64_t width = -1, height = -1;
  for (size_t e = 0; e < entries; ++e) {
    const size_t at = ifd + 2 + 12 * e;
    if (at > n || n - at < 12) return std::nullopt;
    const uint32_t tag = u16(at), type = u16(at + 2);
    if (tag != 256 && tag != 257) continue;
    if (type != 3 && type != 4) return std::nullopt;  // SHORT or LONG, stored in the entry itself
    const int64_t value = type == 3 ? u16(at + 8) : u32(at + 8);
    (tag == 256 ? width : height) = value;
  }
  if (width < 0 || height < 0) return std::nullopt;
  return ImageSize{width, height};
}

// P1..P6: magic, then width and height as decimal text, separated by whitespace and # comments.
std::optional<ImageSize> pnm_size(const unsigned char* b, size_t n) {
  size_t i = 2;
  int64_t values[2] = {0, 0};
  for (int64_t& value : values) {
    while (i < n && (std::isspace(b[i]) || b[i] == '#')) {
      if (b[i] == '#') {
        while (i < n && b[i] != '\n' && b[i] != '\r') ++i;
      } else {
        ++i;
      }
    }
    if (i >= n || !std::isdigit(b[i])) return std::nullopt;
    for (int digits = 0; i < n && std::isdigit(b[i]); ++i, ++digits) {
      if (digits == 12) return std::nullopt;  // beyond any size a decoder accepts
      value = value * 10 + (b[i] - '0');
    }
    // OpenCV's reader consumes the one character that ends a number, whatever it is: "8#6" is a
    // width of 8 and a height of 6 there, not 8 followed by a comment (found by fuzz_image).
    ++i;
  }
  return ImageSize{values[0], values[1]};
}

void check_pixel_limit(const std::string& path, int64_t width, int64_t height, const ImageReadOptions& options) {
  // In double: two 32-bit sides a header declares can overflow int64; the limit (<= 2^30) is exact.
  const double pixels = static_cast<double>(width) * static_cast<double>(height);
  if (pixels <= static_cast<double>(options.max_pixels)) return;
  char megapixels[64];
  std::snprintf(megapixels, sizeof megapixels, "%.1f", pixels / 1e6);
  throw InputError(path + ": " + std::to_string(width) + "x" + std::to_string(height) + " = " + megapixels +
                   " megapixels exceeds the limit of " + std::to_string(options.max_pixels) + " pixels (" +
                   options.max_pixels_setting + ")");
}

// Decodes with IMREAD_UNCHANGED: the file's own depth and channels, no EXIF rotation. The pixel
// limit is checked on the header first, so that a small file declaring a huge picture is refused
// before its decoder allocates anything, and again on what was decoded (formats whose header is
// not parsed here, or a header that lied).
cv::Mat decode(const std::vector<uchar>& bytes, const std::string& path, const ImageReadOptions& options) {
  if (bytes.empty()) throw InputError(path + ": not a decodable image (0 bytes)");
  if (const auto size = image_size_from_header(bytes.data(), bytes.size())) {
    check_pixel_limit(path, size->width, size->height, options);
  }
  if (is_jpeg(bytes) && !jpeg_reaches_end(bytes)) {
    throw InputError(path + ": not a decodable image (truncated JPEG: no end-of-image marker)");
  }
  if (is_png(bytes) && !png_reaches_end(bytes)) {
    throw InputError(path + ": not a decodable image (truncated PNG: no IEND chunk)");
  }
  cv::Mat image;
  try {
    image = cv::imdecode(bytes, cv::IMREAD_UNCHANGED);
  } catch (const cv::Exception& e) {
    throw InputError(path + ": not a decodable image (" + e.err + ")");
  }
  if (image.empty()) {
    throw InputError(path + ": not a decodable image (unknown format or corrupt data, " +
                     std::to_string(bytes.size()) + " bytes)");
  }
  check_pixel_limit(path, image.cols, image.rows, options);
  if (image.depth() != CV_8U && image.depth() != CV_16U) {
    throw InputError(path + ": unsupported image depth (only 8- and 16-bit images are read)");
  }
  return image;
}

cv::Mat decode(const std::string& path, const ImageReadOptions& options) {
  return decode(read_bytes(path), path, options);
}

}  // namespace

std::optional<ImageSize> image_size_from_header(const unsigned char* data, size_t size) {
  const auto starts_with = [&](const char* magic, size_t length) {
    return size >= length && std::memcmp(data, magic, length) == 0;
  };
  if (starts_with("\xFF\xD8\xFF", 3)) return jpeg_size(data, size);
  if (starts_with("\x89PNG\r\n\x1A\n", 8)) return png_size(data, size);
  if (starts_with("BM", 2)) return bmp_size(data, size);
  if (starts_with("RIFF", 4) && size >= 12 && std::memcmp(data + 8, "WEBP", 4) == 0) return webp_size(data, size);
  if (starts_with("II*\0", 4) || starts_with("MM\0*", 4)) return tiff_size(data, size);
  if (size >= 2 && data[0] == 'P' && data[1] >= '1' && data[1] <= '6') return pnm_size(data, size);
  return std::nullopt;
}

torch::Tensor image_rgb_from_bgr(const cv::Mat& picture, const std::string& path) {
  cv::Mat image = picture;
  // OpenCV's channel order is BGR(A): which of its channels is R, G, B.
  int from[3];
  switch (image.channels()) {
    case 1: from[0] = from[1] = from[2] = 0; break;
    case 3:
    case 4: from[0] = 2, from[1] = 1, from[2] = 0; break;
    default:
      throw InputError(path + ": unsupported image (" + std::to_string(image.channels()) + " channels)");
  }
  if (image.depth() != CV_8U && image.depth() != CV_16U) {
    throw InputError(path + ": unsupported image depth (only 8- and 16-bit images are read)");
  }
  const bool wide = image.depth() == CV_16U;
  // Torch 1.13 has no uint16 dtype: widen 16-bit data to int32 (exact) before wrapping it.
  if (wide) image.convertTo(image, CV_32S);
  const auto hwc = torch::from_blob(image.data, {image.rows, image.cols, image.channels()},
                                    {static_cast<int64_t>(image.step[0] / image.elemSize1()),
                                     static_cast<int64_t>(image.channels()), 1},
                                    wide ? torch::kInt32 : torch::kUInt8);
  // Channel by channel into the float result: no converted copy of the whole picture beside it
  // (memory per pixel: docs/model.md). Divide in float like torchvision's to_tensor
  // (x.float() / 255), so pixels match it bit for bit.
  auto chw = torch::empty({3, image.rows, image.cols}, torch::kFloat);
  for (int c = 0; c < 3; ++c) chw[c].copy_(hwc.select(2, from[c]));
  return chw.div_(wide ? 65535.0 : 255.0);
}

torch::Tensor read_image_rgb(const std::string& path, const ImageReadOptions& options) {
  return image_rgb_from_bgr(decode(path, options), path);
}

torch::Tensor decode_image_rgb(const std::vector<unsigned char>& bytes, const std::string& source,
                               const ImageReadOptions& options) {
  return image_rgb_from_bgr(decode(bytes, source, options), source);
}

torch::Tensor read_label_image(const std::string& path, const ImageReadOptions& options) {
  cv::Mat image = decode(path, options);
  if (image.channels() != 1) {
    throw InputError(path + ": a mask must have 1 channel of instance ids, this one has " +
                     std::to_string(image.channels()));
  }
  image.convertTo(image, CV_32S);
  return torch::from_blob(image.data, {image.rows, image.cols}, torch::kInt32).to(torch::kInt64);
}

namespace {

void encode_png_atomically(const std::string& path, const cv::Mat& image) {
  std::vector<uchar> bytes;
  if (!cv::imencode(".png", image, bytes)) throw InputError(path + ": cannot encode PNG");
  write_bytes_atomically(path, std::string(bytes.begin(), bytes.end()));
}

}  // namespace

void write_image_png(const std::string& path, const torch::Tensor& image) {
  TORCH_CHECK(image.dim() == 3 && image.size(0) == 3, "write_image_png: expected [3, H, W], got ", image.sizes());
  auto hwc = image.detach().to(torch::kCPU, torch::kFloat).mul(255).round().clamp(0, 255)
                 .to(torch::kUInt8).permute({1, 2, 0}).contiguous();
  cv::Mat rgb(static_cast<int>(hwc.size(0)), static_cast<int>(hwc.size(1)), CV_8UC3, hwc.data_ptr());
  cv::Mat bgr;
  cv::cvtColor(rgb, bgr, cv::COLOR_RGB2BGR);
  encode_png_atomically(path, bgr);
}

void write_label_png(const std::string& path, const torch::Tensor& ids) {
  TORCH_CHECK(ids.dim() == 2, "write_label_png: expected [H, W], got ", ids.sizes());
  auto values = ids.detach().to(torch::kCPU, torch::kInt32).contiguous();
  const int max_id = values.numel() ? values.max().item<int>() : 0;
  TORCH_CHECK(values.numel() == 0 || (values.min().item<int>() >= 0 && max_id <= 65535),
              "write_label_png: ids must be in 0..65535");
  cv::Mat wide(static_cast<int>(values.size(0)), static_cast<int>(values.size(1)), CV_32S, values.data_ptr());
  cv::Mat out;
  wide.convertTo(out, max_id <= 255 ? CV_8U : CV_16U);
  encode_png_atomically(path, out);
}

}  // namespace instseg::data
