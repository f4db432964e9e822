#include "instseg/data/synthetic.h"

#include <torch/torch.h>

#include <cmath>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include "data/random.h"
#include "instseg/errors.h"

namespace instseg::data {
namespace {

enum Shape : int64_t { kCircle = 1, kRectangle, kTriangle, kStar };
constexpr double kPi = 3.14159265358979323846;
constexpr int kShiftBits = 4;  // OpenCV sub-pixel precision for the drawn outlines
constexpr int kPlacementTries = 20;

// Uniform noise in [-amplitude, amplitude], from the image's own random stream.
torch::Tensor noise(Rng& rng, int64_t h, int64_t w, double amplitude) {
  std::vector<float> values(static_cast<size_t>(3 * h * w));
  for (float& v : values) v = static_cast<float>(rng.uniform(-amplitude, amplitude));
  return torch::from_blob(values.data(), {3, h, w}, torch::kFloat).clone();
}

torch::Tensor random_colour(Rng& rng) {
  return torch::tensor({rng.uniform(), rng.uniform(), rng.uniform()}, torch::kFloat).view({3, 1, 1});
}

// [3, H, W]: a two-colour gradient, stripes, or a flat colour with strong noise, at a random angle.
torch::Tensor background(Rng& rng, int64_t h, int64_t w) {
  const auto c1 = random_colour(rng), c2 = random_colour(rng);
  const double angle = rng.uniform(0, kPi);
  const auto ys = torch::arange(h, torch::kFloat).view({h, 1}), xs = torch::arange(w, torch::kFloat).view({1, w});
  const auto along = xs * std::cos(angle) + ys * std::sin(angle);  // [H, W] distance along the angle
  torch::Tensor image;
  double grain = 0.04;
  switch (rng.integer(0, 2)) {
    case 0: {
      const auto t = (along - along.min()) / (along.max() - along.min());
      image = c1 * (1 - t) + c2 * t;
      break;
    }
    case 1: {
      const double half_period = rng.uniform(4, 16);
      const auto odd = torch::floor(along / half_period).remainder(2).to(torch::kBool);
      image = torch::where(odd, c1, c2);
      break;
    }
    default:
      image = c1.expand({3, h, w});
      grain = 0.12;
  }
  return image + noise(rng, h, w, grain);
}

cv::Point fixed_point(double x, double y) {
  return {static_cast<int>(std::lround(x * (1 << kShiftBits))), static_cast<int>(std::lround(y * (1 << kShiftBits)))};
}

// Binary [H, W] uint8 mask of one shape of diameter `size` centred at (cx, cy), clipped to the image.
torch::Tensor draw_shape(Rng& rng, Shape shape, double cx, double cy, double size, int64_t h, int64_t w) {
  cv::Mat mask = cv::Mat::zeros(static_cast<int>(h), static_cast<int>(w), CV_8U);
  const double r = size / 2, rotation = rng.uniform(0, 2 * kPi);
  std::vector<cv::Point> points;
  const auto polar = [&](double radius, double angle) {
    points.push_back(fixed_point(cx + radius * std::cos(rotation + angle), cy + radius * std::sin(rotation + angle)));
  };
  switch (shape) {
    case kCircle:
      cv::circle(mask, fixed_point(cx, cy), static_cast<int>(std::lround(r * (1 << kShiftBits))), 1, cv::FILLED,
                 cv::LINE_8, kShiftBits);
      break;
    case kRectangle: {  // corners of a w x h rectangle inscribed in the diameter circle
      const double half_diagonal_angle = rng.uniform(0.25, 0.5) * kPi / 2;  // aspect from 1:1 to ~1:3
      for (double a : {half_diagonal_angle, kPi - half_diagonal_angle, kPi + half_diagonal_angle, -half_diagonal_angle}) {
        polar(r, a);
      }
      break;
    }
    case kTriangle:  // corners near 120 degrees apart, so no sliver triangles
      polar(r, 0);
      polar(r, 2 * kPi / 3 + rng.uniform(-0.35, 0.35));
      polar(r, 4 * kPi / 3 + rng.uniform(-0.35, 0.35));
      break;
    case kStar: {
      const double inner = r * rng.uniform(0.4, 0.55);
      for (int k = 0; k < 10; ++k) polar(k % 2 ? inner : r, k * kPi / 5);
      break;
    }
  }
  if (!points.empty()) cv::fillPoly(mask, std::vector<std::vector<cv::Point>>{points}, 1, cv::LINE_8, kShiftBits);
  return torch::from_blob(mask.data, {h, w}, torch::kUInt8).clone();
}

}  // namespace

void SyntheticOptions::validate() const {
  const auto fail = [](const std::string& field, const std::string& rule, double value) {
    throw ConfigError("synthetic." + field + " must be " + rule + ", got " + std::to_string(value));
  };
  if (num_images < 1) fail("num_images", ">= 1", num_images);
  if (height < 32) fail("height", ">= 32", height);
  if (width < 32) fail("width", ">= 32", width);
  if (min_objects < 0) fail("min_objects", ">= 0", min_objects);
  if (max_objects < min_objects) fail("max_objects", ">= min_objects", max_objects);
  if (!(min_size > 0 && min_size <= 1)) fail("min_size", "in (0, 1]", min_size);
  if (!(max_size >= min_size && max_size <= 1)) fail("max_size", "in [min_size, 1]", max_size);
  if (!(min_visible_fraction >= 0 && min_visible_fraction <= 1)) fail("min_visible_fraction", "in [0, 1]", min_visible_fraction);
  if (min_visible_area < 1) fail("min_visible_area", ">= 1", min_visible_area);
}

SyntheticDataset::SyntheticDataset(SyntheticOptions options)
    : options_(options), categories_({kCircle, kRectangle, kTriangle, kStar}, {"circle", "rectangle", "triangle", "star"}) {
  options_.validate();
}

Sample SyntheticDataset::get(int64_t index) const {
  TORCH_CHECK(index >= 0 && index < size(), "SyntheticDataset: index ", index, " out of range");
  const int64_t h = options_.height, w = options_.width;
  Rng rng({options_.seed, static_cast<uint64_t>(index)});
  torch::Tensor image = background(rng, h, w);

  std::vector<torch::Tensor> masks;  // visible part of each accepted shape, [H, W] uint8
  std::vector<int64_t> full_areas, labels;
  const int64_t wanted = rng.integer(options_.min_objects, options_.max_objects);
  for (int64_t k = 0; k < wanted; ++k) {
    for (int attempt = 0; attempt < kPlacementTries; ++attempt) {
      const auto shape = static_cast<Shape>(rng.integer(kCircle, kStar));
      const double size = rng.uniform(options_.min_size, options_.max_size) * std::min(h, w);
      const double cx = rng.uniform(0.1, 0.9) * w, cy = rng.uniform(0.1, 0.9) * h;
      const torch::Tensor mask = draw_shape(rng, shape, cx, cy, size, h, w);
      const int64_t area = mask.sum().item<int64_t>();
      if (area < options_.min_visible_area) continue;
      // Accept only if every earlier shape stays visible enough once this one covers it.
      bool hides_too_much = false;
      for (size_t j = 0; j < masks.size() && !hides_too_much; ++j) {
        const int64_t left = (masks[j] & (1 - mask)).sum().item<int64_t>();
        hides_too_much = left < std::max<double>(options_.min_visible_area, options_.min_visible_fraction * full_areas[j]);
      }
      if (hides_too_much) continue;
      for (auto& earlier : masks) earlier = earlier & (1 - mask);  // occluded pixels belong to the new shape
      // Colour far enough from the background under the shape to be seen (a few draws suffice).
      const auto under = (image * mask).sum({1, 2}) / area;  // [3] mean background colour
      torch::Tensor colour = random_colour(rng);
      for (int c = 0; c < 8 && (colour.view({3}) - under).abs().sum().item<double>() < 0.4; ++c) colour = random_colour(rng);
      image = torch::where(mask.to(torch::kBool), colour + noise(rng, h, w, 0.03), image);
      masks.push_back(mask);
      full_areas.push_back(area);
      labels.push_back(shape);
      break;
    }
  }

  Sample sample;
  // Quantised to 8 bits, so the PNG written by the COCO export holds exactly these pixels.
  sample.image = image.clamp(0, 1).mul(255).round().div(255);
  sample.image_id = index + 1;
  if (masks.empty()) {
    sample.targets = empty_targets(h, w);
  } else {
    sample.targets.masks = torch::stack(masks);
    sample.targets.boxes = mask_boxes(sample.targets.masks);
    sample.targets.labels = torch::tensor(labels, torch::kInt64);
  }
  return sample;
}

}  // namespace instseg::data
