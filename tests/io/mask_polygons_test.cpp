// io/mask_polygons: COCO polygons from an RLE mask, checked on shapes whose boundary is known by
// hand, and filled back with coco::from_polygons (maskApi's rasterisation) against the mask.
#include "instseg/io/mask_polygons.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace instseg {
namespace {

// h x w mask with the rectangle rows [y0, y1] x columns [x0, x1] (inclusive) set.
std::vector<uint8_t> rectangle(uint32_t h, uint32_t w, int x0, int y0, int x1, int y1) {
  std::vector<uint8_t> m(h * w, 0);
  for (int y = y0; y <= y1; ++y)
    for (int x = x0; x <= x1; ++x) m[y * w + x] = 1;
  return m;
}

TEST(MaskPolygons, RectangleIsItsCornerPixelCentres) {
  const auto m = rectangle(30, 40, 5, 10, 24, 19);
  const auto polygons = io::mask_polygons(coco::encode(m.data(), 30, 40));
  ASSERT_EQ(polygons.size(), 1u);
  // The four corners (CHAIN_APPROX_SIMPLE keeps only them), at the centres of the corner pixels,
  // starting top-left and going round (findContours' order: down the left side first).
  const std::vector<double> expected = {5.5, 10.5, 5.5, 19.5, 24.5, 19.5, 24.5, 10.5};
  EXPECT_EQ(polygons[0], expected);
}

TEST(MaskPolygons, OnePolygonPerPartHolesFilledSpecksDropped) {
  // Two squares, the first with a hole, and a single pixel.
  auto m = rectangle(50, 60, 2, 2, 21, 21);
  for (int y = 8; y <= 15; ++y)
    for (int x = 8; x <= 15; ++x) m[y * 60 + x] = 0;
  const auto second = rectangle(50, 60, 30, 30, 49, 44);
  for (size_t i = 0; i < m.size(); ++i) m[i] |= second[i];
  m[45 * 60 + 5] = 1;
  const auto rle = coco::encode(m.data(), 50, 60);
  const auto polygons = io::mask_polygons(rle);
  ASSERT_EQ(polygons.size(), 2u);  // the speck has one vertex: no area, left out
  for (const auto& p : polygons) EXPECT_EQ(p.size(), 8u);
  // Filled again: each square less a half-pixel border (maskApi fills what the polygon
  // through the pixel centres covers), the hole filled.
  const auto filled = coco::from_polygons(polygons, 50, 60);
  const auto filled_pixels = coco::decode(filled);
  EXPECT_EQ(filled_pixels[12 * 60 + 12], 1) << "the hole is part of the outer polygon";
  EXPECT_EQ(filled_pixels[45 * 60 + 5], 0);
  EXPECT_EQ(filled_pixels[0], 0);
  // Nothing outside the mask, and each square less one row and one column: the polygon through
  // its border pixels' centres spans 19 pixels where the square has 20 (20 x 20 and 20 x 15).
  const auto original = coco::decode(rle);
  for (size_t i = 0; i < filled_pixels.size(); ++i) {
    const size_t y = i / 60, x = i % 60;
    if (y >= 8 && y <= 15 && x >= 8 && x <= 15) continue;  // the hole
    ASSERT_LE(filled_pixels[i], original[i]) << "pixel " << i << " outside the mask";
  }
  EXPECT_EQ(coco::area(filled), 19u * 19u + 19u * 14u);
}

TEST(MaskPolygons, DiskRoundTripsAndEmptyMaskHasNone) {
  const uint32_t h = 64, w = 80;
  std::vector<uint8_t> m(h * w, 0);
  for (uint32_t y = 0; y < h; ++y)
    for (uint32_t x = 0; x < w; ++x) m[y * w + x] = std::hypot(x - 40.0, y - 30.0) <= 20.0;
  const auto rle = coco::encode(m.data(), h, w);
  const auto polygons = io::mask_polygons(rle);
  ASSERT_EQ(polygons.size(), 1u);
  // The half-pixel border lost is ~pi r = 63 of the disk's ~1257 pixels: IoU ~0.95.
  EXPECT_GE(coco::iou(coco::from_polygons(polygons, h, w), rle, false), 0.93);
  for (size_t i = 0; i < polygons[0].size(); ++i) {
    // Every vertex at a pixel centre on the disk's rim.
    const double v = polygons[0][i];
    EXPECT_DOUBLE_EQ(v - std::floor(v), 0.5) << i;
  }
  const std::vector<uint8_t> empty(h * w, 0);
  EXPECT_TRUE(io::mask_polygons(coco::encode(empty.data(), h, w)).empty());
}

}  // namespace
}  // namespace instseg
