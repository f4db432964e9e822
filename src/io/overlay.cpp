#include "instseg/io/overlay.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "instseg/errors.h"
#include "instseg/io/class_names.h"

namespace instseg {

namespace {

// Well-separated colours: hues stepped by the golden ratio, so neighbouring labels differ.
cv::Scalar label_colour(int64_t label) {
  const double hue = std::fmod(static_cast<double>(label) * 0.618033988749895, 1.0) * 180.0;
  cv::Mat hsv(1, 1, CV_8UC3, cv::Scalar(hue, 200, 255));
  cv::Mat bgr;
  cv::cvtColor(hsv, bgr, cv::COLOR_HSV2BGR);
  const auto c = bgr.at<cv::Vec3b>(0, 0);
  return {static_cast<double>(c[0]), static_cast<double>(c[1]), static_cast<double>(c[2])};
}

cv::Mat to_bgr_u8(const torch::Tensor& image) {
  // [3, H, W] float RGB -> [H, W, 3] uint8 BGR, one channel at a time so that no float copy of the
  // whole picture is made beside it.
  const auto rgb = image.detach().to(torch::kCPU, torch::kFloat);
  cv::Mat bgr(static_cast<int>(rgb.size(1)), static_cast<int>(rgb.size(2)), CV_8UC3);
  const auto out = torch::from_blob(bgr.data, {rgb.size(1), rgb.size(2), 3}, torch::kUInt8);
  for (int c = 0; c < 3; ++c) out.select(2, c).copy_(rgb[2 - c].clamp(0, 1).mul_(255.0f).round_());
  return bgr;
}

// Tints and outlines one mask on the canvas (the picture enlarged `scale` times), within its
// region plus a pixel of margin, so that findContours sees the mask's outside as on the whole
// image and the outline is the same.
void draw_mask(cv::Mat& canvas, const MaskRegion& region, const OverlayOptions& options, const cv::Scalar& colour) {
  const int scale = options.scale;
  const int64_t rows = region.probs.size(0), cols = region.probs.size(1);
  if (rows == 0 || cols == 0) return;
  const int64_t height = canvas.rows / scale, width = canvas.cols / scale;
  const int64_t x0 = std::max<int64_t>(region.x - 1, 0), y0 = std::max<int64_t>(region.y - 1, 0);
  const int64_t x1 = std::min(region.x + cols + 1, width), y1 = std::min(region.y + rows + 1, height);
  auto mask_tensor = torch::zeros({y1 - y0, x1 - x0}, torch::kUInt8);
  using torch::indexing::Slice;
  mask_tensor.index({Slice(region.y - y0, region.y - y0 + rows), Slice(region.x - x0, region.x - x0 + cols)})
      .copy_(region.probs >= options.mask_thresh);
  cv::Mat mask(static_cast<int>(mask_tensor.size(0)), static_cast<int>(mask_tensor.size(1)), CV_8UC1,
               mask_tensor.data_ptr());
  if (scale > 1) cv::resize(mask, mask, cv::Size(mask.cols * scale, mask.rows * scale), 0, 0, cv::INTER_NEAREST);
  const cv::Rect box(static_cast<int>(x0) * scale, static_cast<int>(y0) * scale, mask.cols, mask.rows);
  cv::Mat area = canvas(box);
  cv::Mat tinted(area.size(), area.type(), colour);
  cv::Mat blended;
  cv::addWeighted(area, 1.0 - options.mask_alpha, tinted, options.mask_alpha, 0.0, blended);
  blended.copyTo(area, mask);
  std::vector<std::vector<cv::Point>> contours;
  cv::findContours(mask, contours, cv::RETR_EXTERNAL, cv::CHAIN_APPROX_SIMPLE, box.tl());
  cv::drawContours(canvas, contours, -1, colour, 1, cv::LINE_AA);
}

std::string render(const torch::Tensor& image, const Detections& detections, const MaskRegionOf* mask_of,
                   const std::vector<std::string>& class_names, const OverlayOptions& options,
                   const std::string& extension) {
  if (options.scale < 1) throw ConfigError("overlay scale must be >= 1, got " + std::to_string(options.scale));
  cv::Mat canvas = to_bgr_u8(image);
  const int scale = options.scale;
  if (scale > 1) cv::resize(canvas, canvas, cv::Size(), scale, scale, cv::INTER_NEAREST);
  const auto scores = detections.scores.to(torch::kCPU, torch::kFloat);
  const auto boxes = detections.boxes.to(torch::kCPU, torch::kFloat);
  const auto labels = detections.labels.to(torch::kCPU, torch::kLong);
  const int64_t count = scores.size(0);
  const bool has_masks = mask_of || (detections.masks.defined() && detections.masks.numel() > 0);

  // Draw low scores first so the most confident detections end on top.
  for (int64_t i = count - 1; i >= 0; --i) {
    if (scores[i].item<float>() < options.show_thresh) continue;
    const auto colour = label_colour(labels[i].item<int64_t>());
    if (has_masks) {
      draw_mask(canvas, mask_of ? (*mask_of)(i) : MaskRegion{0, 0, detections.masks[i][0]}, options, colour);
    }
    const auto b = boxes[i] * scale;
    const cv::Point top_left(static_cast<int>(b[0].item<float>()), static_cast<int>(b[1].item<float>()));
    const cv::Point bottom_right(static_cast<int>(b[2].item<float>()), static_cast<int>(b[3].item<float>()));
    cv::rectangle(canvas, top_left, bottom_right, colour, 2, cv::LINE_AA);

    char score_text[16];
    std::snprintf(score_text, sizeof score_text, " %.2f", scores[i].item<float>());
    const std::string text = class_name(class_names, labels[i].item<int64_t>()) + score_text;
    int baseline = 0;
    const double font_scale = 0.5;
    const auto size = cv::getTextSize(text, cv::FONT_HERSHEY_SIMPLEX, font_scale, 1, &baseline);
    // Keep the label inside the picture when the box touches the top edge.
    const int y = std::max(top_left.y, size.height + baseline + 2);
    cv::rectangle(canvas, cv::Point(top_left.x, y - size.height - baseline - 2),
                  cv::Point(top_left.x + size.width + 2, y), colour, cv::FILLED);
    cv::putText(canvas, text, cv::Point(top_left.x + 1, y - baseline - 1), cv::FONT_HERSHEY_SIMPLEX,
                font_scale, cv::Scalar(0, 0, 0), 1, cv::LINE_AA);
  }

  std::vector<uchar> encoded;
  if (!cv::imencode(extension, canvas, encoded)) {
    throw InputError("cannot encode overlay picture as " + extension);
  }
  return std::string(encoded.begin(), encoded.end());
}

}  // namespace

std::string render_overlay(const torch::Tensor& image, const Detections& detections,
                           const std::vector<std::string>& class_names,
                           const OverlayOptions& options, const std::string& extension) {
  return render(image, detections, nullptr, class_names, options, extension);
}

std::string render_overlay(const torch::Tensor& image, const Detections& detections, const MaskRegionOf& mask_of,
                           const std::vector<std::string>& class_names, const OverlayOptions& options,
                           const std::string& extension) {
  if (!(options.mask_thresh > 0)) {
    throw ConfigError("overlay mask_thresh must be > 0 with mask regions, got " + std::to_string(options.mask_thresh));
  }
  return render(image, detections, &mask_of, class_names, options, extension);
}

}  // namespace instseg
