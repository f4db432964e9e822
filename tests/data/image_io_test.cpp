#include "instseg/data/image_io.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

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

}  // namespace
}  // namespace instseg::data
