#pragma once
// Reading and writing image files as tensors. Every failure is an InputError naming the file, e.g.
// "images/0003.jpg: not a decodable image (0 bytes)".
#include <torch/types.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace cv {
class Mat;
}

namespace instseg::data {

// Images with more pixels than this are refused before they are decoded: a small file can
// declare a huge picture (a 12000 x 9000 JPEG of 3.8 MB, a PNG of zeros of a few KB), and each
// pixel costs ~15 bytes to read as float RGB and more to predict on (docs/model.md, "Memory").
// 100 megapixels admits every common camera; a larger picture needs the limit raised on purpose.
inline constexpr int64_t kDefaultMaxImagePixels = 100'000'000;
// OpenCV 4.6's decoders refuse more than 2^30 pixels whatever we allow (its
// OPENCV_IO_MAX_IMAGE_PIXELS), and COCO's RLE counts are 32-bit: the highest limit one may set.
inline constexpr int64_t kMaxImagePixelsCeiling = int64_t{1} << 30;

struct ImageReadOptions {
  int64_t max_pixels = kDefaultMaxImagePixels;  // width x height; 1 .. kMaxImagePixelsCeiling
  // How the user raises the limit, named in the error ("--max-image-pixels" for predict).
  std::string max_pixels_setting = "--max-image-pixels";
};

struct ImageSize {
  int64_t width = 0;
  int64_t height = 0;
};

// The size an image file's header declares, parsed from its first bytes without decoding: JPEG
// (SOFn), PNG (IHDR), BMP, WebP (VP8, VP8L, VP8X), TIFF (first IFD) and PNM (P1-P6). nullopt for
// other formats and for headers that cannot be parsed; the reader then decodes and checks the
// decoded size (OpenCV's own 2^30-pixel guard bounds that decode).
std::optional<ImageSize> image_size_from_header(const unsigned char* data, size_t size);

// Reads a JPEG/PNG/... file as [3, H, W] float RGB in [0, 1] (8-bit values / 255, 16-bit values /
// 65535). Grayscale is repeated into 3 channels; an alpha channel is dropped. EXIF orientation is
// not applied, like PIL (and therefore like COCO's annotations and torchvision's reference).
// Truncated JPEG and PNG files are rejected instead of being decoded partially. A picture of more
// than options.max_pixels pixels is an InputError naming its size and the limit, raised from the
// header before anything is decoded.
torch::Tensor read_image_rgb(const std::string& path, const ImageReadOptions& options = {});

// The same for an encoded image held in memory (a request body); `source` names it in errors
// ("request body: not a decodable image (...)"). Pixels equal read_image_rgb's of the same bytes.
torch::Tensor decode_image_rgb(const std::vector<unsigned char>& bytes, const std::string& source,
                               const ImageReadOptions& options = {});

// A decoded OpenCV picture (8- or 16-bit, 1, 3 or 4 channels in OpenCV's BGR(A) order, as
// cv::imread and cv::VideoCapture give it) as read_image_rgb's tensor: the same pixels bit for bit.
// InputError naming `source` for other depths or channel counts.
torch::Tensor image_rgb_from_bgr(const cv::Mat& image, const std::string& source);

// Reads a single-channel 8- or 16-bit image (an instance-id mask PNG) as [H, W] int64 values,
// under the same pixel limit.
torch::Tensor read_label_image(const std::string& path, const ImageReadOptions& options = {});

// Writes [3, H, W] float RGB in [0, 1] (rounded to 8 bits) as a PNG, atomically.
void write_image_png(const std::string& path, const torch::Tensor& image);

// Writes [H, W] integer ids (0..65535) as a single-channel PNG, 8-bit when every id fits, else
// 16-bit, atomically.
void write_label_png(const std::string& path, const torch::Tensor& ids);

}  // namespace instseg::data
