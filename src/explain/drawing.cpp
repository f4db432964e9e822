#include "drawing.h"

#include <torch/torch.h>

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>

namespace instseg::explain {

cv::Mat to_bgr(const torch::Tensor& image) {
  const auto hwc = (image.detach().to(torch::kFloat).clamp(0, 1) * 255.0f)
                       .round()
                       .to(torch::kUInt8)
                       .permute({1, 2, 0})
                       .flip({2})  // RGB -> BGR
                       .contiguous();
  cv::Mat picture(int(hwc.size(0)), int(hwc.size(1)), CV_8UC3);
  std::memcpy(picture.data, hwc.data_ptr<uint8_t>(), hwc.numel());
  return picture;
}

cv::Mat denormalized_bgr(const torch::Tensor& input, const std::array<double, 3>& mean,
                         const std::array<double, 3>& std) {
  const auto m = torch::tensor({float(mean[0]), float(mean[1]), float(mean[2])}).view({3, 1, 1});
  const auto s = torch::tensor({float(std[0]), float(std[1]), float(std[2])}).view({3, 1, 1});
  return to_bgr(input.detach().to(torch::kFloat) * s + m);
}

namespace {

// Five stops of matplotlib's viridis, linearly interpolated: dark blue (low) to yellow (high),
// readable in grey and for the common colour-vision deficiencies.
cv::Vec3b viridis(double t) {
  static const double stops[5][3] = {
      {68, 1, 84}, {59, 82, 139}, {33, 145, 140}, {94, 201, 98}, {253, 231, 37}};  // RGB
  t = std::clamp(t, 0.0, 1.0) * 4;
  const int i = std::min(int(t), 3);
  const double f = t - i;
  cv::Vec3b bgr;
  for (int c = 0; c < 3; ++c) {
    bgr[2 - c] = cv::saturate_cast<uint8_t>(stops[i][c] * (1 - f) + stops[i + 1][c] * f);
  }
  return bgr;
}

}  // namespace

cv::Mat heat_map(const torch::Tensor& values, double lo, double hi) {
  const auto v = values.detach().to(torch::kDouble).contiguous();
  if (lo >= hi) {
    lo = v.numel() ? v.min().item<double>() : 0;
    hi = v.numel() ? v.max().item<double>() : 1;
    if (hi <= lo) hi = lo + 1;
  }
  const int h = int(v.size(0)), w = int(v.size(1));
  cv::Mat picture(h, w, CV_8UC3);
  const double* p = v.data_ptr<double>();
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) picture.at<cv::Vec3b>(y, x) = viridis((p[y * w + x] - lo) / (hi - lo));
  }
  return picture;
}

cv::Mat enlarge(const cv::Mat& picture, int factor) {
  if (factor <= 1) return picture.clone();
  cv::Mat out;
  cv::resize(picture, out, cv::Size(), factor, factor, cv::INTER_NEAREST);
  return out;
}

void draw_box(cv::Mat& picture, const float* xyxy, const cv::Scalar& bgr, int thickness) {
  cv::rectangle(picture, cv::Point(int(std::lround(xyxy[0])), int(std::lround(xyxy[1]))),
                cv::Point(int(std::lround(xyxy[2])), int(std::lround(xyxy[3]))), bgr, thickness,
                cv::LINE_AA);
}

void draw_text(cv::Mat& picture, const std::string& text, int x, int y, const cv::Scalar& bgr, double scale) {
  int baseline = 0;
  const auto size = cv::getTextSize(text, cv::FONT_HERSHEY_SIMPLEX, scale, 1, &baseline);
  const cv::Rect backing(x, y, size.width + 4, size.height + baseline + 4);
  cv::rectangle(picture, backing & cv::Rect(0, 0, picture.cols, picture.rows), cv::Scalar(20, 20, 20), cv::FILLED);
  cv::putText(picture, text, cv::Point(x + 2, y + 2 + size.height), cv::FONT_HERSHEY_SIMPLEX, scale, bgr, 1,
              cv::LINE_AA);
}

cv::Scalar palette(int index) {
  // Hues spaced by the golden angle: neighbours in the sequence differ strongly.
  const double hue = std::fmod(index * 137.508, 360.0);
  cv::Mat hsv(1, 1, CV_8UC3, cv::Scalar(hue / 2, 200, 255)), bgr;
  cv::cvtColor(hsv, bgr, cv::COLOR_HSV2BGR);
  const auto c = bgr.at<cv::Vec3b>(0, 0);
  return cv::Scalar(c[0], c[1], c[2]);
}

cv::Mat hconcat_padded(const std::vector<cv::Mat>& pictures, int gap) {
  int height = 0, width = 0;
  for (const auto& p : pictures) height = std::max(height, p.rows), width += p.cols + gap;
  cv::Mat out(height, std::max(width - gap, 1), CV_8UC3, cv::Scalar(255, 255, 255));
  int x = 0;
  for (const auto& p : pictures) {
    p.copyTo(out(cv::Rect(x, 0, p.cols, p.rows)));
    x += p.cols + gap;
  }
  return out;
}

}  // namespace instseg::explain
