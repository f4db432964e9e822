#include "training_canvas.h"

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cmath>

#include "drawing.h"

namespace instseg::explain::training_pictures {

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

void Canvas::label(const std::string& text, double x, double y, const cv::Scalar& bgr) {
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

}  // namespace instseg::explain::training_pictures
