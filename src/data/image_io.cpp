#include "instseg/data/image_io.h"

#include <torch/torch.h>

#include <algorithm>
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

// Decodes with IMREAD_UNCHANGED: the file's own depth and channels, no EXIF rotation.
cv::Mat decode(const std::string& path) {
  const std::vector<uchar> bytes = read_bytes(path);
  if (bytes.empty()) throw InputError(path + ": not a decodable image (0 bytes)");
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
  if (image.depth() != CV_8U && image.depth() != CV_16U) {
    throw InputError(path + ": unsupported image depth (only 8- and 16-bit images are read)");
  }
  return image;
}

}  // namespace

torch::Tensor read_image_rgb(const std::string& path) {
  cv::Mat image = decode(path);
  cv::Mat rgb;
  switch (image.channels()) {
    case 1: cv::cvtColor(image, rgb, cv::COLOR_GRAY2RGB); break;
    case 3: cv::cvtColor(image, rgb, cv::COLOR_BGR2RGB); break;
    case 4: cv::cvtColor(image, rgb, cv::COLOR_BGRA2RGB); break;
    default:
      throw InputError(path + ": unsupported image (" + std::to_string(image.channels()) + " channels)");
  }
  const bool wide = rgb.depth() == CV_16U;
  // Torch 1.13 has no uint16 dtype: widen 16-bit data to int32 (exact) before wrapping it.
  if (wide) rgb.convertTo(rgb, CV_32S);
  auto hwc = torch::from_blob(rgb.data, {rgb.rows, rgb.cols, 3}, wide ? torch::kInt32 : torch::kUInt8);
  // Divide in float like torchvision's to_tensor (x.float() / 255), so pixels match it bit for bit.
  return hwc.permute({2, 0, 1}).to(torch::kFloat).div(wide ? 65535.0 : 255.0).contiguous();
}

torch::Tensor read_label_image(const std::string& path) {
  cv::Mat image = decode(path);
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
