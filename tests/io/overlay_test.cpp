// Overlay pictures: the mask tint lands on the detection's pixels and nowhere else, and an
// enlarged picture (OverlayOptions::scale, used for the demo's 128 px images) is the same drawing
// on a bigger canvas.
#include "instseg/io/overlay.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <opencv2/imgcodecs.hpp>

#include "instseg/errors.h"

namespace instseg {
namespace {

// A 40 x 60 grey picture with one detection: box (10, 8)-(50, 36), its mask a 20 x 30 block inside.
struct Scene {
  torch::Tensor image = torch::full({3, 40, 60}, 0.5f);
  Detections detections;
  Scene() {
    detections.boxes = torch::tensor({{10.0f, 8.0f, 50.0f, 36.0f}});
    detections.scores = torch::tensor({0.9f});
    detections.labels = torch::tensor({1}, torch::kLong);
    detections.masks = torch::zeros({1, 1, 40, 60});
    detections.masks.index_put_({0, 0, torch::indexing::Slice(12, 32), torch::indexing::Slice(15, 45)}, 1.0f);
  }
};

cv::Mat render(const Scene& scene, int scale) {
  OverlayOptions options;
  options.scale = scale;
  const std::string png = render_overlay(scene.image, scene.detections, {"background", "thing"}, options, ".png");
  return cv::imdecode(std::vector<uchar>(png.begin(), png.end()), cv::IMREAD_COLOR);
}

TEST(Overlay, TintsTheMaskOnlyAndScalesTheWholeDrawing) {
  const Scene scene;
  const cv::Mat small = render(scene, 1), large = render(scene, 4);
  ASSERT_EQ(small.rows, 40);
  ASSERT_EQ(small.cols, 60);
  ASSERT_EQ(large.rows, 160);
  ASSERT_EQ(large.cols, 240);
  const cv::Vec3b grey(128, 128, 128);
  // Inside the mask, away from the box outline and the label: tinted, the same at both scales.
  const cv::Vec3b inside = small.at<cv::Vec3b>(25, 30);
  EXPECT_NE(inside, grey);
  EXPECT_EQ(large.at<cv::Vec3b>(4 * 25 + 2, 4 * 30 + 2), inside);
  // Outside the box: untouched.
  EXPECT_EQ(small.at<cv::Vec3b>(2, 2), grey);
  EXPECT_EQ(large.at<cv::Vec3b>(4 * 38, 4 * 55), grey);
}

TEST(Overlay, ScaleBelowOneIsAConfigError) {
  OverlayOptions options;
  options.scale = 0;
  const Scene scene;
  EXPECT_THROW(render_overlay(scene.image, scene.detections, {}, options, ".png"), ConfigError);
}

}  // namespace
}  // namespace instseg
