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

Canvas::Canvas(const cv::Mat& base, double scale) : scale(scale) {
  if (scale == 1) {
    picture = base.clone();
  } else {
    cv::resize(base, picture, cv::Size(), scale, scale, scale > 1 ? cv::INTER_NEAREST : cv::INTER_AREA);
  }
}

void Canvas::box(const float* xyxy, const cv::Scalar& bgr, int thickness) {
  const float scaled[4] = {float(xyxy[0] * scale), float(xyxy[1] * scale), float(xyxy[2] * scale),
                           float(xyxy[3] * scale)};
  draw_box(picture, scaled, bgr, thickness);
}

void Canvas::dot(double x, double y, const cv::Scalar& bgr, int radius) {
  cv::circle(picture, cv::Point(int(std::lround(x * scale)), int(std::lround(y * scale))), radius, bgr, cv::FILLED,
             cv::LINE_AA);
}

void Canvas::text(const std::string& text, double x, double y, const cv::Scalar& bgr) {
  int baseline = 0;
  const auto size = cv::getTextSize(text, cv::FONT_HERSHEY_SIMPLEX, 0.45, 1, &baseline);
  const int px = std::clamp(int(std::lround(x * scale)), 0, std::max(0, picture.cols - size.width - 4));
  const int py = std::clamp(int(std::lround(y * scale)), 0, std::max(0, picture.rows - size.height - baseline - 4));
  draw_text(picture, text, px, py, bgr);
}

double display_scale(int height, int width, int target) {
  const int longer = std::max(1, std::max(height, width));
  return longer >= target ? 1.0 : double(std::max(1, target / longer));
}

cv::Mat text_panel(const std::vector<TextLine>& lines, int width, double scale) {
  int line_height = 0, widest = 0;
  for (const auto& [text, colour] : lines) {
    int baseline = 0;
    const auto size = cv::getTextSize(text.empty() ? " " : text, cv::FONT_HERSHEY_SIMPLEX, scale, 1, &baseline);
    line_height = std::max(line_height, size.height + baseline + 6);
    widest = std::max(widest, size.width + 12);
  }
  cv::Mat panel(std::max(1, int(lines.size()) * line_height + 8), std::max(width, widest), CV_8UC3,
                cv::Scalar(20, 20, 20));
  for (size_t i = 0; i < lines.size(); ++i) {
    if (!lines[i].first.empty()) draw_text(panel, lines[i].first, 4, 4 + int(i) * line_height, lines[i].second, scale);
  }
  return panel;
}

cv::Mat vconcat_padded(const std::vector<cv::Mat>& pictures, int gap) {
  int height = 0, width = 1;
  for (const auto& p : pictures) height += p.rows + gap, width = std::max(width, p.cols);
  cv::Mat out(std::max(height - gap, 1), width, CV_8UC3, cv::Scalar(255, 255, 255));
  int y = 0;
  for (const auto& p : pictures) {
    p.copyTo(out(cv::Rect(0, y, p.cols, p.rows)));
    y += p.rows + gap;
  }
  return out;
}

cv::Mat grid(const std::vector<cv::Mat>& pictures, int columns, int gap) {
  std::vector<cv::Mat> rows;
  for (size_t i = 0; i < pictures.size(); i += size_t(columns)) {
    const auto end = std::min(pictures.size(), i + size_t(columns));
    rows.push_back(hconcat_padded(std::vector<cv::Mat>(pictures.begin() + long(i), pictures.begin() + long(end)), gap));
  }
  return vconcat_padded(rows, gap);
}

void hatch_padding(Canvas& canvas, int valid_height, int valid_width) {
  cv::Mat& p = canvas.picture;
  const int vh = int(std::lround(valid_height * canvas.scale)), vw = int(std::lround(valid_width * canvas.scale));
  cv::Mat mask(p.rows, p.cols, CV_8U, cv::Scalar(255));
  mask(cv::Rect(0, 0, std::min(vw, p.cols), std::min(vh, p.rows))).setTo(0);
  // Greyed, then diagonal lines, only where the mask is set.
  cv::Mat hatched = p.clone();
  hatched = hatched * 0.4 + cv::Scalar(90, 90, 90);
  for (int d = -p.rows; d < p.cols; d += 10) {
    cv::line(hatched, cv::Point(d, p.rows), cv::Point(d + p.rows, 0), cv::Scalar(0, 140, 255), 1, cv::LINE_AA);
  }
  hatched.copyTo(p, mask);
  cv::rectangle(p, cv::Rect(0, 0, std::min(vw, p.cols), std::min(vh, p.rows)), cv::Scalar(0, 140, 255), 1);
}

Canvas make_canvas(const cv::Mat& picture, int min_side) {
  const int shorter = std::max(1, std::min(picture.rows, picture.cols));
  const int factor = std::max(1, (min_side + shorter - 1) / shorter);
  return Canvas(picture, double(factor));
}

void draw_legend(cv::Mat& picture, const std::vector<TextLine>& entries, int x, int y) {
  for (const auto& [label, colour] : entries) {
    cv::rectangle(picture, cv::Rect(x, y, 14, 14), cv::Scalar(20, 20, 20), cv::FILLED);
    cv::rectangle(picture, cv::Rect(x + 2, y + 2, 10, 10), colour, cv::FILLED);
    draw_text(picture, label, x + 16, y - 2, colour);
    y += 20;
  }
}

cv::Mat titled(const cv::Mat& picture, const std::vector<std::string>& lines) {
  const int line_height = 18;
  int width = picture.cols;
  for (const auto& line : lines) {
    int baseline = 0;
    width = std::max(width, cv::getTextSize(line, cv::FONT_HERSHEY_SIMPLEX, 0.45, 1, &baseline).width + 6);
  }
  cv::Mat out(picture.rows + line_height * int(lines.size()) + 4, width, CV_8UC3, cv::Scalar(255, 255, 255));
  for (size_t i = 0; i < lines.size(); ++i) {
    cv::putText(out, lines[i], cv::Point(2, 14 + line_height * int(i)), cv::FONT_HERSHEY_SIMPLEX, 0.45,
                cv::Scalar(0, 0, 0), 1, cv::LINE_AA);
  }
  picture.copyTo(out(cv::Rect(0, line_height * int(lines.size()) + 4, picture.cols, picture.rows)));
  return out;
}

cv::Mat fit(const cv::Mat& picture, int side) {
  const double f = double(side) / std::max(picture.rows, picture.cols);
  cv::Mat out;
  cv::resize(picture, out, cv::Size(std::max(1, int(std::lround(picture.cols * f))),
                                    std::max(1, int(std::lround(picture.rows * f)))),
             0, 0, cv::INTER_NEAREST);
  return out;
}


cv::Mat blend(const cv::Mat& picture, const cv::Mat& overlay, double alpha) {
  cv::Mat out;
  cv::addWeighted(picture, 1 - alpha, overlay, alpha, 0, out);
  return out;
}

}  // namespace instseg::explain
