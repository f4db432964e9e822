// Overlay pictures: the mask tint lands on the detection's pixels and nowhere else, and an
// enlarged picture (OverlayOptions::scale, used for the demo's 128 px images) is the same drawing
// on a bigger canvas; instances are told apart by colour, outlines follow the mask's edge, labels
// never cover each other or leave the picture, and text grows with the picture.
#include "instseg/io/overlay.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <opencv2/imgcodecs.hpp>
#include <random>

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


cv::Mat decode(const std::string& png) { return cv::imdecode(std::vector<uchar>(png.begin(), png.end()), cv::IMREAD_COLOR); }

// Two people of one class standing side by side: their masks touch along a column, and each is
// still drawn in its own colour.
TEST(Overlay, TouchingMasksOfOneClassGetDifferentColours) {
  const torch::Tensor image = torch::full({3, 80, 120}, 0.5f);
  Detections d;
  d.boxes = torch::tensor({{10.0f, 30.0f, 40.0f, 60.0f}, {40.0f, 30.0f, 70.0f, 60.0f}});
  d.scores = torch::tensor({0.9f, 0.8f});
  d.labels = torch::tensor({1, 1}, torch::kLong);
  d.masks = torch::zeros({2, 1, 80, 120});
  using torch::indexing::Slice;
  d.masks.index_put_({0, 0, Slice(30, 60), Slice(10, 40)}, 1.0f);
  d.masks.index_put_({1, 0, Slice(30, 60), Slice(40, 70)}, 1.0f);
  const cv::Mat picture = decode(render_overlay(image, d, {"background", "person"}, OverlayOptions{}, ".png"));
  const cv::Vec3b grey(128, 128, 128), left = picture.at<cv::Vec3b>(50, 25), right = picture.at<cv::Vec3b>(50, 55);
  EXPECT_NE(left, grey);
  EXPECT_NE(right, grey);
  // Well apart, not a shade: some channel differs by more than 40 of 255.
  int largest = 0;
  for (int c = 0; c < 3; ++c) largest = std::max(largest, std::abs(int(left[c]) - int(right[c])));
  EXPECT_GT(largest, 40) << "left " << left << " right " << right;
}

// The outline is the mask's contour: on a grey picture with a notched block mask (its box and
// labels far away), every pixel that is neither the picture nor the tint is a mask pixel with a
// background 4-neighbour, and every such boundary pixel is drawn (a solid 1 px line at this size).
TEST(Overlay, OutlinePixelsLieOnTheMaskBoundary) {
  const torch::Tensor image = torch::full({3, 120, 160}, 0.5f);
  Detections d;
  d.boxes = torch::tensor({{20.0f, 20.0f, 140.0f, 100.0f}});
  d.scores = torch::tensor({0.9f});
  d.labels = torch::tensor({1}, torch::kLong);
  using torch::indexing::Slice;
  auto mask = torch::zeros({120, 160});
  mask.index_put_({Slice(40, 80), Slice(40, 120)}, 1.0f);
  mask.index_put_({Slice(60, 80), Slice(70, 90)}, 0.0f);  // a notch from below
  d.masks = mask.view({1, 1, 120, 160});
  OverlayOptions options;
  options.labels = false;
  ASSERT_EQ(overlay_style(160, 120).line_width, 1);
  const cv::Mat picture = decode(render_overlay(image, d, {"background", "thing"}, options, ".png"));
  const auto m = mask.accessor<float, 2>();
  const cv::Vec3b grey(128, 128, 128), tint = picture.at<cv::Vec3b>(50, 60);
  ASSERT_NE(tint, grey);
  int outline = 0;
  for (int y = 30; y < 90; ++y) {
    for (int x = 30; x < 130; ++x) {
      const bool inside = m[y][x] > 0;
      const bool boundary = inside && (m[y - 1][x] == 0 || m[y + 1][x] == 0 || m[y][x - 1] == 0 || m[y][x + 1] == 0);
      const cv::Vec3b p = picture.at<cv::Vec3b>(y, x);
      if (boundary) {
        EXPECT_TRUE(p != grey && p != tint) << "boundary pixel (" << x << ", " << y << ") not outlined: " << p;
        ++outline;
      } else {
        EXPECT_EQ(p, inside ? tint : grey) << "(" << x << ", " << y << ") inside " << inside;
      }
    }
  }
  // The rectangle's ring (236), less the notch's 20 on the bottom row, plus its sides and top (19 + 19 + 20).
  EXPECT_EQ(outline, 274);
}

void expect_valid_placement(const std::vector<PixelRect>& boxes, const std::vector<PixelRect>& sizes,
                            const std::vector<std::optional<PixelRect>>& spots, int width, int height) {
  ASSERT_EQ(spots.size(), boxes.size());
  for (size_t i = 0; i < spots.size(); ++i) {
    if (!spots[i]) continue;
    const PixelRect& s = *spots[i];
    EXPECT_EQ(s.width, sizes[i].width);
    EXPECT_EQ(s.height, sizes[i].height);
    EXPECT_GE(s.x, 0) << i;
    EXPECT_GE(s.y, 0) << i;
    EXPECT_LE(s.x + s.width, width) << i;
    EXPECT_LE(s.y + s.height, height) << i;
    // One of the three spots: above the box, inside its top, below it.
    EXPECT_TRUE(s.y == boxes[i].y - s.height || s.y == boxes[i].y || s.y == boxes[i].y + boxes[i].height) << i;
    for (size_t j = 0; j < i; ++j) {
      if (spots[j]) EXPECT_FALSE(s.overlaps(*spots[j])) << "labels " << j << " and " << i << " overlap";
    }
  }
}

TEST(OverlayLabels, StackAboveInsideBelowThenSkipAndStayInsideThePicture) {
  // Four detections of one box (duplicates): above, inside the top, below, then no room.
  const PixelRect box{50, 40, 60, 30}, label{0, 0, 40, 12};
  std::vector<PixelRect> boxes(4, box), sizes(4, label);
  auto spots = place_labels(boxes, sizes, 200, 150);
  expect_valid_placement(boxes, sizes, spots, 200, 150);
  ASSERT_TRUE(spots[0] && spots[1] && spots[2]);
  EXPECT_EQ(spots[0]->y, 28);
  EXPECT_EQ(spots[1]->y, 40);
  EXPECT_EQ(spots[2]->y, 70);
  EXPECT_EQ(spots[0]->x, 50);
  EXPECT_FALSE(spots[3]);

  // A box at the top edge gets its label inside; one past the right edge, or off the left one,
  // has its label moved to end inside the picture; one at the bottom-right corner too.
  boxes = {{10, 0, 30, 30}, {180, 60, 40, 20}, {-15, 100, 30, 20}, {170, 140, 30, 10}};
  sizes = {label, label, label, label};
  spots = place_labels(boxes, sizes, 200, 150);
  expect_valid_placement(boxes, sizes, spots, 200, 150);
  ASSERT_TRUE(spots[0] && spots[1] && spots[2] && spots[3]);
  EXPECT_EQ(spots[0]->y, 0);
  EXPECT_EQ(spots[1]->x, 160);
  EXPECT_EQ(spots[2]->x, 0);
  EXPECT_EQ(spots[3]->y, 128);
  // A label wider than the picture has no spot.
  EXPECT_FALSE(place_labels({box}, {{0, 0, 201, 12}}, 200, 150)[0]);
}

TEST(OverlayLabels, CrowdedScenesNeverOverlapOrLeaveThePicture) {
  std::mt19937 rng(17);
  for (int scene = 0; scene < 50; ++scene) {
    const int width = 80 + static_cast<int>(rng() % 400), height = 60 + static_cast<int>(rng() % 300);
    std::vector<PixelRect> boxes, sizes;
    for (int i = 0; i < 30; ++i) {
      const int x = static_cast<int>(rng() % (width + 40)) - 20, y = static_cast<int>(rng() % (height + 40)) - 20;
      boxes.push_back({x, y, 1 + static_cast<int>(rng() % 100), 1 + static_cast<int>(rng() % 100)});
      sizes.push_back({0, 0, 10 + static_cast<int>(rng() % 90), 8 + static_cast<int>(rng() % 20)});
    }
    const auto spots = place_labels(boxes, sizes, width, height);
    expect_valid_placement(boxes, sizes, spots, width, height);
    EXPECT_GT(std::count_if(spots.begin(), spots.end(), [](const auto& s) { return s.has_value(); }), 0);
  }
}

// Text and lines grow with the picture: the style itself, and the label as drawn (the rows above
// the box that the label covers) on a picture and the same picture four times larger.
TEST(Overlay, TextScaleGrowsWithPictureSize) {
  const auto small = overlay_style(320, 240), medium = overlay_style(1280, 960), large = overlay_style(2560, 1920);
  EXPECT_LT(small.text_height, medium.text_height);
  EXPECT_LT(medium.text_height, large.text_height);
  EXPECT_LT(small.font_scale, medium.font_scale);
  EXPECT_LT(medium.font_scale, large.font_scale);
  EXPECT_LT(small.line_width, large.line_width);
  EXPECT_GE(small.text_height, 8);  // legible on small pictures

  auto label_height = [](int factor) {
    const int height = 240 * factor, width = 320 * factor;
    Detections d;
    d.boxes = torch::tensor({{40.0f, 100.0f, 200.0f, 200.0f}}) * factor;
    d.scores = torch::tensor({0.9f});
    d.labels = torch::tensor({1}, torch::kLong);
    const cv::Mat picture = decode(render_overlay(torch::full({3, height, width}, 0.5f), d, {"background", "thing"},
                                                  OverlayOptions{}, ".png"));
    // The label sits on the box, so its height is from the first drawn row to the box's top.
    for (int y = 0; y < height; ++y) {
      for (int x = 0; x < width; ++x) {
        if (picture.at<cv::Vec3b>(y, x) != cv::Vec3b(128, 128, 128)) return 100 * factor - y;
      }
    }
    return 0;
  };
  const int small_label = label_height(1), large_label = label_height(4);
  EXPECT_GT(small_label, 8);
  EXPECT_GT(large_label, 2.5 * small_label) << small_label << " px high at 320 x 240";
}

}  // namespace
}  // namespace instseg
