#include "instseg/data/image_io.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <iterator>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <optional>
#include <string>
#include <vector>

#include "support/input_error.h"
#include "support/test_dir.h"
#include "instseg/errors.h"
#include "support/reference.h"

namespace instseg::data {
namespace {

using ::instseg::testing::TestDir;
using ::testing::HasSubstr;

const std::string kCocoJpg = "datasets/tiny_coco/train2017/000000005802.jpg";

std::string error_of(const std::string& path) {
  return instseg::testing::input_error_of([&] { read_image_rgb(path); });
}

TEST(ReadImage, JpegMatchesTorchvisionsPilReading) {
  const auto expected = instseg::testing::load_tensors(
      instseg::testing::reference_dir("data_images") + "/expected.pt");
  const auto image = read_image_rgb(instseg::testing::source_path(kCocoJpg));
  ASSERT_EQ(image.sizes(), expected.at("coco_jpg").sizes());
  EXPECT_EQ(image.dtype(), torch::kFloat);
  // Same libjpeg-turbo and the same float division: identical values.
  EXPECT_TRUE(torch::equal(image, expected.at("coco_jpg")));
}

TEST(ReadImage, GrayscaleRgbaPaletteAnd16BitGiveThreeChannels) {
  const std::string dir = instseg::testing::reference_dir("data_images");
  const auto expected = instseg::testing::load_tensors(dir + "/expected.pt");
  for (const std::string name : {"gray8", "gray16", "rgba", "palette"}) {
    SCOPED_TRACE(name);
    const auto image = read_image_rgb(dir + "/" + name + ".png");
    ASSERT_EQ(image.sizes(), (std::vector<int64_t>{3, 7, 5}));
    EXPECT_TRUE(torch::equal(image, expected.at(name)));
  }
}

TEST(ReadImage, PngRoundTripKeepsEightBitValues) {
  TestDir dir;
  const auto image = torch::randint(0, 256, {3, 4, 6}, torch::kUInt8).to(torch::kFloat) / 255;
  write_image_png(dir.file("a.png"), image);
  EXPECT_TRUE(torch::equal(read_image_rgb(dir.file("a.png")), image));
}

TEST(ReadImage, LabelPngUsesSixteenBitsOnlyWhenNeeded) {
  TestDir dir;
  auto small = torch::tensor({0, 1, 2, 255}, torch::kInt64).reshape({2, 2});
  auto large = torch::tensor({0, 1, 300, 65535}, torch::kInt64).reshape({2, 2});
  write_label_png(dir.file("small.png"), small);
  write_label_png(dir.file("large.png"), large);
  EXPECT_TRUE(torch::equal(read_label_image(dir.file("small.png")), small));
  EXPECT_TRUE(torch::equal(read_label_image(dir.file("large.png")), large));
  // The 8-bit file is smaller than a 16-bit one would be: the depth was chosen from the values.
  EXPECT_LT(instseg::testing::read_file_bytes(dir.file("small.png")).size(),
            instseg::testing::read_file_bytes(dir.file("large.png")).size());
}

TEST(ReadImage, LabelImageRejectsColourMasks) {
  TestDir dir;
  write_image_png(dir.file("colour.png"), torch::zeros({3, 2, 2}));
  try {
    read_label_image(dir.file("colour.png"));
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_THAT(e.what(), HasSubstr("colour.png: a mask must have 1 channel"));
  }
}

TEST(ReadImage, BadFilesAreInputErrorsNamingTheFile) {
  TestDir dir;
  const std::string jpg = instseg::testing::read_file_bytes(instseg::testing::source_path(kCocoJpg));
  const std::string png = instseg::testing::read_file_bytes(
      instseg::testing::reference_dir("data_images") + "/rgba.png");
  const std::string empty = dir.write("empty.jpg", "");
  const std::string text = dir.write("notes.jpg", "this is not an image\n");
  const std::string cut_jpg = dir.write("cut.jpg", jpg.substr(0, jpg.size() / 2));
  const std::string cut_png = dir.write("cut.png", png.substr(0, png.size() - 20));
  const std::string missing = dir.file("missing.jpg");

  EXPECT_THAT(error_of(empty), HasSubstr("empty.jpg: not a decodable image (0 bytes)"));
  EXPECT_THAT(error_of(text), HasSubstr("notes.jpg: not a decodable image ("));
  EXPECT_THAT(error_of(cut_jpg), HasSubstr("cut.jpg: not a decodable image (truncated JPEG"));
  EXPECT_THAT(error_of(cut_png), HasSubstr("cut.png: not a decodable image (truncated PNG"));
  EXPECT_THAT(error_of(missing), HasSubstr("missing.jpg: cannot read image (no such file)"));
  EXPECT_THAT(error_of(dir.file("")), HasSubstr("cannot read image"));  // a folder
}

TEST(ReadImage, JpegWithJunkAfterTheEndMarkerIsAccepted) {
  TestDir dir;
  const std::string jpg = instseg::testing::read_file_bytes(instseg::testing::source_path(kCocoJpg));
  const auto path = dir.write("junk.jpg", jpg + std::string(100, '\0'));
  EXPECT_TRUE(torch::equal(read_image_rgb(path), read_image_rgb(instseg::testing::source_path(kCocoJpg))));
}

std::string encoded(const cv::Mat& image, const std::string& extension) {
  std::vector<uchar> bytes;
  EXPECT_TRUE(cv::imencode(extension, image, bytes)) << extension;
  return std::string(bytes.begin(), bytes.end());
}

std::optional<ImageSize> header_size(const std::string& bytes) {
  return image_size_from_header(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size());
}

std::string be32(uint32_t v) { return {char(v >> 24), char(v >> 16), char(v >> 8), char(v)}; }
std::string le32(uint32_t v) { return {char(v), char(v >> 8), char(v >> 16), char(v >> 24)}; }
std::string le16(uint32_t v) { return {char(v), char(v >> 8)}; }

// Headers that declare a huge picture and stop there: no pixel data at all.
std::string png_header(uint32_t width, uint32_t height) {
  return std::string("\x89PNG\r\n\x1A\n", 8) + be32(13) + "IHDR" + be32(width) + be32(height) +
         std::string("\x08\x02\x00\x00\x00", 5);
}
std::string jpeg_header(uint32_t width, uint32_t height) {
  // SOI, SOF0 (length 17: precision 8, height, width, 3 components), then nothing.
  return std::string("\xFF\xD8\xFF\xC0\x00\x11\x08", 7) + char(height >> 8) + char(height) + char(width >> 8) +
         char(width) + std::string("\x03\x01\x22\x00\x02\x11\x01\x03\x11\x01", 10);
}
std::string tiff_header(uint32_t width, uint32_t height) {
  // Little-endian, first IFD at 8: two LONG entries (ImageWidth, ImageLength), no next IFD.
  return std::string("II*\0", 4) + le32(8) + le16(2) + le16(256) + le16(4) + le32(1) + le32(width) + le16(257) +
         le16(4) + le32(1) + le32(height) + le32(0);
}
std::string bmp_header(int32_t width, int32_t height) {
  return "BM" + le32(0) + le32(0) + le32(54) + le32(40) + le32(static_cast<uint32_t>(width)) +
         le32(static_cast<uint32_t>(height)) + le16(1) + le16(24);
}
std::string webp_vp8x_header(uint32_t width, uint32_t height) {
  const auto le24 = [](uint32_t v) { return std::string{char(v), char(v >> 8), char(v >> 16)}; };
  return "RIFF" + le32(30) + "WEBPVP8X" + le32(10) + std::string(4, '\0') + le24(width - 1) + le24(height - 1);
}

TEST(ImageHeader, SizeOfEveryParsedFormatMatchesWhatOpenCvWrites) {
  const cv::Mat colour(23, 37, CV_8UC3, cv::Scalar(10, 200, 90));
  const cv::Mat gray(23, 37, CV_8UC1, cv::Scalar(77));
  for (const std::string ext : {".jpg", ".png", ".bmp", ".webp", ".tiff", ".ppm"}) {
    SCOPED_TRACE(ext);
    const auto size = header_size(encoded(colour, ext));
    ASSERT_TRUE(size.has_value());
    EXPECT_EQ(size->width, 37);
    EXPECT_EQ(size->height, 23);
  }
  for (const std::string ext : {".png", ".pgm", ".tiff"}) {
    SCOPED_TRACE(ext);
    const auto size = header_size(encoded(gray, ext));
    ASSERT_TRUE(size.has_value());
    EXPECT_EQ(size->width, 37);
    EXPECT_EQ(size->height, 23);
  }
  // Lossless WebP (quality above 100) has its own header (VP8L).
  std::vector<uchar> webp;
  ASSERT_TRUE(cv::imencode(".webp", colour, webp, {cv::IMWRITE_WEBP_QUALITY, 101}));
  ASSERT_EQ(std::string(webp.begin() + 12, webp.begin() + 16), "VP8L");
  const auto lossless = header_size(std::string(webp.begin(), webp.end()));
  ASSERT_TRUE(lossless.has_value());
  EXPECT_EQ(lossless->width, 37);
  EXPECT_EQ(lossless->height, 23);
  // Top-down BMP (negative height), and a PNM with a comment inside its header.
  const auto top_down = header_size(bmp_header(640, -480));
  ASSERT_TRUE(top_down.has_value());
  EXPECT_EQ(top_down->height, 480);
  const auto pnm = header_size("P6\n# made by hand\n640 480\n255\n");
  ASSERT_TRUE(pnm.has_value());
  EXPECT_EQ(pnm->width, 640);
  EXPECT_EQ(pnm->height, 480);
  // A '#' right after a number ends it and is consumed as OpenCV's reader does: no comment there.
  const std::string glued = std::string("P6\n8#6\n255\n") + std::string(8 * 6 * 3, '\x80');
  const auto glued_size = header_size(glued);
  ASSERT_TRUE(glued_size.has_value());
  std::vector<uchar> glued_bytes(glued.begin(), glued.end());
  const cv::Mat decoded = cv::imdecode(glued_bytes, cv::IMREAD_UNCHANGED);
  ASSERT_FALSE(decoded.empty());
  EXPECT_EQ(glued_size->width, decoded.cols);
  EXPECT_EQ(glued_size->height, decoded.rows);
  // Not parsed: other formats and bytes that are no header.
  EXPECT_FALSE(header_size("GIF89a....").has_value());
  EXPECT_FALSE(header_size("").has_value());
  EXPECT_FALSE(header_size(std::string("\xFF\xD8\xFF", 3)).has_value());  // JPEG cut before its frame
  EXPECT_FALSE(header_size(std::string("II*\0", 4) + le32(1000)).has_value());  // IFD beyond the file
}

TEST(ReadImage, HugeDeclaredSizeIsRefusedFromTheHeaderBeforeDecoding) {
  TestDir dir;
  // 100000 x 100000 declared, no pixel data: the limit is what is reported, not the truncation.
  const std::string png = dir.write("huge.png", png_header(100000, 100000));
  EXPECT_THAT(error_of(png), HasSubstr("huge.png: 100000x100000 = 10000.0 megapixels exceeds the limit of "
                                       "100000000 pixels (--max-image-pixels)"));
  const std::string jpg = dir.write("huge.jpg", jpeg_header(65000, 60000));
  EXPECT_THAT(error_of(jpg), HasSubstr("huge.jpg: 65000x60000 = 3900.0 megapixels exceeds the limit"));
  const std::string tif = dir.write("huge.tif", tiff_header(100000, 100000));
  EXPECT_THAT(error_of(tif), HasSubstr("huge.tif: 100000x100000 = 10000.0 megapixels exceeds the limit"));
  const std::string bmp = dir.write("huge.bmp", bmp_header(100000, -100000));
  EXPECT_THAT(error_of(bmp), HasSubstr("huge.bmp: 100000x100000 = 10000.0 megapixels exceeds the limit"));
  const std::string webp = dir.write("huge.webp", webp_vp8x_header(16000000, 16000000));
  EXPECT_THAT(error_of(webp), HasSubstr("huge.webp: 16000000x16000000 = 256000000.0 megapixels exceeds the limit"));
  // Sides of 2^32 - 1 each: the product overflows 64-bit integers, not the check.
  const std::string widest = dir.write("widest.tif", tiff_header(0xFFFFFFFFu, 0xFFFFFFFFu));
  EXPECT_THAT(error_of(widest), HasSubstr("widest.tif: 4294967295x4294967295 = "));
  // Label images obey the same limit.
  EXPECT_THAT(instseg::testing::input_error_of([&] { read_label_image(png); }), HasSubstr("exceeds the limit"));
}

long peak_rss_kb() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss;
}

TEST(ReadImage, RealPictureOverTheLimitIsRefusedWithoutDecodingAndUnderARaisedLimitRead) {
  TestDir dir;
  // 12000 x 9000 of one grey: a JPEG of ~1.5 MB, 108 megapixels decoded. Made in a child process,
  // so that this process's peak memory does not already hold the picture.
  const std::string jpg = dir.file("photo.jpg");
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    const std::string bytes = encoded(cv::Mat(9000, 12000, CV_8UC1, cv::Scalar(128)), ".jpg");
    std::ofstream(jpg, std::ios::binary) << bytes;
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  const long peak_before = peak_rss_kb();
  EXPECT_THAT(error_of(jpg), HasSubstr("photo.jpg: 12000x9000 = 108.0 megapixels exceeds the limit of "
                                       "100000000 pixels (--max-image-pixels)"));
  // Refused from the header, never decoded: decoding would raise this process's peak by the 108 MB
  // of grey pixels (more as RGB or float). Memory, not time, so a loaded machine cannot flake it.
  EXPECT_LT(peak_rss_kb() - peak_before, 64 * 1024) << "KB of peak memory growth";
  // A lower limit, named as the caller says it is set.
  ImageReadOptions options;
  options.max_pixels = 37 * 23 - 1;
  options.max_pixels_setting = "data.max_image_pixels";
  const std::string small = dir.write("small.png", encoded(cv::Mat(23, 37, CV_8UC3, cv::Scalar(1, 2, 3)), ".png"));
  EXPECT_THAT(instseg::testing::input_error_of([&] { read_image_rgb(small, options); }),
              HasSubstr("small.png: 37x23 = 0.0 megapixels exceeds the limit of 850 pixels (data.max_image_pixels)"));
  options.max_pixels = 37 * 23;
  EXPECT_EQ(read_image_rgb(small, options).sizes(), (std::vector<int64_t>{3, 23, 37}));
}

TEST(ReadImage, FormatWithoutAParsedHeaderIsCheckedOnceDecoded) {
  TestDir dir;
  // Sun raster: OpenCV decodes it, image_size_from_header does not know it.
  const std::string raster = encoded(cv::Mat(23, 37, CV_8UC3, cv::Scalar(1, 2, 3)), ".ras");
  ASSERT_FALSE(header_size(raster).has_value());
  const std::string path = dir.write("picture.ras", raster);
  ImageReadOptions options;
  options.max_pixels = 100;
  EXPECT_THAT(instseg::testing::input_error_of([&] { read_image_rgb(path, options); }),
              HasSubstr("picture.ras: 37x23 = 0.0 megapixels exceeds the limit of 100 pixels (--max-image-pixels)"));
  EXPECT_EQ(read_image_rgb(path).sizes(), (std::vector<int64_t>{3, 23, 37}));
}

TEST(ReadImage, EveryChannelLayoutReadsAsOpenCvsConversionToRgb) {
  // The reader copies channels itself (no converted copy of the picture): same values as
  // cvtColor to RGB, for gray, BGR, BGRA and 16-bit.
  TestDir dir;
  cv::Mat bgr(5, 7, CV_8UC3), bgra(5, 7, CV_8UC4), gray16(5, 7, CV_16UC1);
  cv::randu(bgr, 0, 256);
  cv::randu(bgra, 0, 256);
  cv::randu(gray16, 0, 65536);
  const auto expect_as = [&](const cv::Mat& image, int code, double scale, const std::string& name) {
    SCOPED_TRACE(name);
    cv::Mat rgb;
    cv::cvtColor(image, rgb, code);
    rgb.convertTo(rgb, CV_32F);
    const auto expected =
        torch::from_blob(rgb.data, {rgb.rows, rgb.cols, 3}, torch::kFloat).permute({2, 0, 1}).div(scale);
    EXPECT_TRUE(torch::equal(read_image_rgb(dir.write(name, encoded(image, ".png"))), expected));
  };
  expect_as(bgr, cv::COLOR_BGR2RGB, 255.0, "bgr.png");
  expect_as(bgra, cv::COLOR_BGRA2RGB, 255.0, "bgra.png");
  expect_as(gray16, cv::COLOR_GRAY2RGB, 65535.0, "gray16.png");
}


std::vector<unsigned char> file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<unsigned char>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// The server decodes request bodies and video frames arrive as cv::Mat: both must give the pixels
// a file gives, or `serve` and video frames would not equal `predict` on the same picture.
TEST(DecodeImage, BytesAndOpenCvPicturesGiveTheFilesPixels) {
  const std::string dir = instseg::testing::reference_dir("data_images");
  std::vector<std::string> paths = {instseg::testing::source_path(kCocoJpg)};
  for (const std::string name : {"gray8", "gray16", "rgba", "palette"}) paths.push_back(dir + "/" + name + ".png");
  for (const std::string& path : paths) {
    SCOPED_TRACE(path);
    const auto from_file = read_image_rgb(path);
    EXPECT_TRUE(torch::equal(decode_image_rgb(file_bytes(path), "body"), from_file));
    EXPECT_TRUE(torch::equal(image_rgb_from_bgr(cv::imread(path, cv::IMREAD_UNCHANGED), "frame"), from_file));
  }
  // A view into a larger picture (rows padded by the parent's width) reads as its own pixels.
  const cv::Mat whole = cv::imread(paths[0], cv::IMREAD_UNCHANGED);
  const cv::Rect part(13, 7, 101, 57);
  const auto expected = read_image_rgb(paths[0]).slice(1, 7, 64).slice(2, 13, 114);
  EXPECT_TRUE(torch::equal(image_rgb_from_bgr(whole(part), "part"), expected));
}

TEST(DecodeImage, BadBytesAndPicturesAreInputErrorsNamingTheSource) {
  using instseg::testing::input_error_of;
  EXPECT_THAT(input_error_of([] { decode_image_rgb({}, "request body"); }),
              HasSubstr("request body: not a decodable image (0 bytes)"));
  const std::string junk = "not an image at all";
  EXPECT_THAT(input_error_of([&] { decode_image_rgb({junk.begin(), junk.end()}, "request body"); }),
              HasSubstr("request body: not a decodable image"));
  // The pixel limit is checked from the header, as for files, with the caller's setting named.
  const std::string huge = png_header(100000, 100000);
  ImageReadOptions limits;
  limits.max_pixels_setting = "--max-image-pixels of serve";
  EXPECT_THAT(input_error_of([&] { decode_image_rgb({huge.begin(), huge.end()}, "request body", limits); }),
              HasSubstr("request body: 100000x100000 = 10000.0 megapixels exceeds the limit of 100000000 pixels "
                        "(--max-image-pixels of serve)"));
  const std::vector<unsigned char> jpg = file_bytes(instseg::testing::source_path(kCocoJpg));
  EXPECT_THAT(input_error_of([&] { decode_image_rgb({jpg.begin(), jpg.begin() + jpg.size() / 2}, "upload"); }),
              HasSubstr("upload: not a decodable image (truncated JPEG"));
  EXPECT_THAT(input_error_of([] { image_rgb_from_bgr(cv::Mat(4, 4, CV_32FC3, cv::Scalar(0.5)), "frame 3"); }),
              HasSubstr("frame 3: unsupported image depth"));
  EXPECT_THAT(input_error_of([] { image_rgb_from_bgr(cv::Mat(4, 4, CV_8UC2, cv::Scalar(1)), "frame 4"); }),
              HasSubstr("frame 4: unsupported image (2 channels)"));
}

}  // namespace
}  // namespace instseg::data
