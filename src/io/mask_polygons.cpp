#include "instseg/io/mask_polygons.h"

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

namespace instseg::io {

std::vector<std::vector<double>> mask_polygons(const coco::Rle& mask) {
  std::vector<std::vector<double>> polygons;
  if (mask.h == 0 || mask.w == 0) return polygons;
  std::vector<uint8_t> pixels = coco::decode(mask);  // row-major h * w of 0/1
  cv::Mat image(static_cast<int>(mask.h), static_cast<int>(mask.w), CV_8UC1, pixels.data());
  std::vector<std::vector<cv::Point>> contours;
  cv::findContours(image, contours, cv::RETR_EXTERNAL, cv::CHAIN_APPROX_SIMPLE);
  for (const auto& contour : contours) {
    if (contour.size() < 3) continue;
    std::vector<double> xy;
    xy.reserve(contour.size() * 2);
    for (const cv::Point& p : contour) {
      xy.push_back(p.x + 0.5);
      xy.push_back(p.y + 0.5);
    }
    polygons.push_back(std::move(xy));
  }
  return polygons;
}

}  // namespace instseg::io
