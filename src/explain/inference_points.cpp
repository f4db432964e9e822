#include "inference_points.h"

#include <torch/torch.h>

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cmath>

#include "drawing.h"

namespace instseg::explain::infer {

std::vector<std::array<double, 2>> RoiAlignGrid::points(int64_t ph, int64_t pw) const {
  std::vector<std::array<double, 2>> out;
  for (int64_t iy = 0; iy < grid_h; ++iy) {
    const double y = y1 + ph * bin_h + (iy + 0.5) * bin_h / grid_h;
    for (int64_t ix = 0; ix < grid_w; ++ix) out.push_back({x1 + pw * bin_w + (ix + 0.5) * bin_w / grid_w, y});
  }
  return out;
}

RoiAlignGrid roi_align_grid(const torch::Tensor& roi, double scale, int64_t pooled_h, int64_t pooled_w,
                            int64_t sampling_ratio) {
  const auto b = roi.to(torch::kDouble).contiguous();
  const double* p = b.data_ptr<double>();
  RoiAlignGrid g;
  g.x1 = p[0] * scale, g.y1 = p[1] * scale, g.x2 = p[2] * scale, g.y2 = p[3] * scale;
  g.roi_w = std::max(g.x2 - g.x1, 1.0);
  g.roi_h = std::max(g.y2 - g.y1, 1.0);
  g.pooled_h = pooled_h, g.pooled_w = pooled_w;
  g.bin_w = g.roi_w / pooled_w;
  g.bin_h = g.roi_h / pooled_h;
  // sampling_ratio 0 would be adaptive (ceil(roi / pooled)); the poolers use 2.
  g.grid_h = sampling_ratio > 0 ? sampling_ratio : int64_t(std::ceil(g.roi_h / pooled_h));
  g.grid_w = sampling_ratio > 0 ? sampling_ratio : int64_t(std::ceil(g.roi_w / pooled_w));
  return g;
}

cv::Mat draw_sampling_grid(const torch::Tensor& feature, const RoiAlignGrid& g) {
  const int64_t height = feature.size(1), width = feature.size(2);
  // The feature pixels around the RoI (one pixel of margin), at least a few.
  const int64_t c0 = std::clamp<int64_t>(int64_t(std::floor(g.x1)) - 1, 0, width - 1);
  const int64_t r0 = std::clamp<int64_t>(int64_t(std::floor(g.y1)) - 1, 0, height - 1);
  const int64_t c1 = std::clamp<int64_t>(int64_t(std::ceil(g.x1 + g.roi_w)) + 1, c0, width - 1);
  const int64_t r1 = std::clamp<int64_t>(int64_t(std::ceil(g.y1 + g.roi_h)) + 1, r0, height - 1);
  const int64_t cols = c1 - c0 + 1, rows = r1 - r0 + 1;
  const int zoom = int(std::clamp<int64_t>(640 / std::max(cols, rows), 8, 96));
  const auto energy = feature.to(torch::kFloat).pow(2).mean(0).slice(0, r0, r1 + 1).slice(1, c0, c1 + 1);
  cv::Mat picture = enlarge(heat_map(energy), zoom);
  // Feature coordinate -> picture pixel: pixel i's cell is centred on coordinate i.
  auto px = [&](double x) { return int(std::lround((x - c0 + 0.5) * zoom)); };
  auto py = [&](double y) { return int(std::lround((y - r0 + 0.5) * zoom)); };
  const cv::Scalar cell(90, 90, 90), bins(0, 230, 255), box(255, 255, 255), point(40, 40, 255);
  for (int64_t c = 0; c <= cols; ++c) cv::line(picture, {int(c * zoom), 0}, {int(c * zoom), picture.rows}, cell, 1);
  for (int64_t r = 0; r <= rows; ++r) cv::line(picture, {0, int(r * zoom)}, {picture.cols, int(r * zoom)}, cell, 1);
  for (int64_t i = 1; i < g.pooled_w; ++i) {
    const double x = g.x1 + i * g.bin_w;
    cv::line(picture, {px(x), py(g.y1)}, {px(x), py(g.y1 + g.roi_h)}, bins, 1, cv::LINE_AA);
  }
  for (int64_t i = 1; i < g.pooled_h; ++i) {
    const double y = g.y1 + i * g.bin_h;
    cv::line(picture, {px(g.x1), py(y)}, {px(g.x1 + g.roi_w), py(y)}, bins, 1, cv::LINE_AA);
  }
  cv::rectangle(picture, {px(g.x1), py(g.y1)}, {px(g.x1 + g.roi_w), py(g.y1 + g.roi_h)}, box, 2, cv::LINE_AA);
  const int radius = std::max(2, zoom / 10);
  for (int64_t ph = 0; ph < g.pooled_h; ++ph) {
    for (int64_t pw = 0; pw < g.pooled_w; ++pw) {
      for (const auto& p : g.points(ph, pw)) cv::circle(picture, {px(p[0]), py(p[1])}, radius, point, cv::FILLED, cv::LINE_AA);
    }
  }
  // Column and row numbers of the feature pixels along the edges (every few when dense).
  const int64_t every = std::max<int64_t>(1, 40 / zoom);
  for (int64_t c = 0; c < cols; c += every) {
    cv::putText(picture, std::to_string(c0 + c), {int(c * zoom) + 2, 12}, cv::FONT_HERSHEY_SIMPLEX, 0.35,
                cv::Scalar(255, 255, 255), 1, cv::LINE_AA);
  }
  for (int64_t r = 0; r < rows; r += every) {
    cv::putText(picture, std::to_string(r0 + r), {2, int(r * zoom) + 24}, cv::FONT_HERSHEY_SIMPLEX, 0.35,
                cv::Scalar(255, 255, 255), 1, cv::LINE_AA);
  }
  return picture;
}

}  // namespace instseg::explain::infer
