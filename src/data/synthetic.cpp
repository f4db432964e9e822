#include "instseg/data/synthetic.h"

#include <torch/torch.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <numeric>
#include <vector>
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

// Pixels are composed in plain float arrays: through tensor operations a batch of eight 128 px
// images took 35-65 ms of CPU (dispatch and thread-pool overhead on tiny tensors), now 8-15 ms,
// taken by the loader's thread from the training step's two cores. The float arithmetic is the tensor
// version's, in its order: 600 images of two configurations came out bit-identical.
struct Canvas {
  int64_t h, w;
  std::vector<float> pixels;  // [3, H, W]
  float& at(int64_t c, int64_t i) { return pixels[static_cast<size_t>(c * h * w + i)]; }
  float at(int64_t c, int64_t i) const { return pixels[static_cast<size_t>(c * h * w + i)]; }
};

using Colour = std::array<float, 3>;

Colour random_colour(Rng& rng) {
  Colour c;
  for (float& v : c) v = static_cast<float>(rng.uniform());
  return c;
}

// Uniform noise in [-amplitude, amplitude] on a [3, H, W] stream, one draw per pixel and channel
// in that order; only the pixels `wanted` lists are drawn, the rest of the stream is skipped.
template <typename Apply>
void add_noise(Rng& rng, Canvas& canvas, double amplitude, const std::vector<int64_t>& wanted, Apply apply) {
  const int64_t plane = canvas.h * canvas.w;
  for (int64_t c = 0; c < 3; ++c) {
    for (const int64_t i : wanted) {
      apply(c, i, static_cast<float>(rng.uniform_ahead(static_cast<uint64_t>(c * plane + i), -amplitude, amplitude)));
    }
  }
  rng.skip(static_cast<uint64_t>(3 * plane));
}

// A two-colour gradient, stripes, or a flat colour with strong noise, at a random angle.
Canvas background(Rng& rng, int64_t h, int64_t w) {
  const Colour c1 = random_colour(rng), c2 = random_colour(rng);
  const double angle = rng.uniform(0, kPi);
  const float cos_a = static_cast<float>(std::cos(angle)), sin_a = static_cast<float>(std::sin(angle));
  std::vector<float> along(static_cast<size_t>(h * w));  // distance along the angle
  for (int64_t y = 0; y < h; ++y) {
    for (int64_t x = 0; x < w; ++x) along[y * w + x] = static_cast<float>(x) * cos_a + static_cast<float>(y) * sin_a;
  }
  Canvas canvas{h, w, std::vector<float>(static_cast<size_t>(3 * h * w))};
  double grain = 0.04;
  const int64_t kind = rng.integer(0, 2);
  if (kind == 0) {
    const auto [lo, hi] = std::minmax_element(along.begin(), along.end());
    const float low = *lo, range = *hi - *lo;
    for (int64_t i = 0; i < h * w; ++i) {
      const float t = (along[i] - low) / range;
      for (int64_t c = 0; c < 3; ++c) canvas.at(c, i) = c1[c] * (1 - t) + c2[c] * t;
    }
  } else if (kind == 1) {
    const float half_period = static_cast<float>(rng.uniform(4, 16));
    for (int64_t i = 0; i < h * w; ++i) {
      const bool odd = std::fmod(std::floor(along[i] / half_period), 2.0f) != 0;
      for (int64_t c = 0; c < 3; ++c) canvas.at(c, i) = odd ? c1[c] : c2[c];
    }
  } else {
    for (int64_t i = 0; i < h * w; ++i) {
      for (int64_t c = 0; c < 3; ++c) canvas.at(c, i) = c1[c];
    }
    grain = 0.12;
  }
  std::vector<int64_t> all(static_cast<size_t>(h * w));
  std::iota(all.begin(), all.end(), 0);
  add_noise(rng, canvas, grain, all, [&](int64_t c, int64_t i, float v) { canvas.at(c, i) += v; });
  return canvas;
}

cv::Point fixed_point(double x, double y) {
  return {static_cast<int>(std::lround(x * (1 << kShiftBits))), static_cast<int>(std::lround(y * (1 << kShiftBits)))};
}

// Binary [H, W] uint8 mask of one shape of diameter `size` centred at (cx, cy), clipped to the image.
cv::Mat draw_shape(Rng& rng, Shape shape, double cx, double cy, double size, int64_t h, int64_t w) {
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
  return mask;
}

// Pixels of `earlier` that `later` leaves uncovered.
int64_t area_outside(const cv::Mat& earlier, const cv::Mat& later) {
  int64_t left = 0;
  for (size_t i = 0; i < earlier.total(); ++i) left += earlier.data[i] & (1 - later.data[i]);
  return left;
}

// Mean colour of the canvas over the given pixels, summed in double (the tensor version's float sum
// differs in the last bits; the value only decides whether a colour stands out enough).
Colour mean_colour(const Canvas& canvas, const std::vector<int64_t>& pixels) {
  Colour mean;
  for (int64_t c = 0; c < 3; ++c) {
    double sum = 0;
    for (const int64_t i : pixels) sum += canvas.at(c, i);
    mean[c] = static_cast<float>(sum / static_cast<double>(pixels.size()));
  }
  return mean;
}

double colour_distance(const Colour& a, const Colour& b) {
  double d = 0;
  for (int c = 0; c < 3; ++c) d += std::abs(static_cast<double>(a[c] - b[c]));
  return d;
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
  Canvas canvas = background(rng, h, w);

  std::vector<cv::Mat> masks;  // visible part of each accepted shape, [H, W] uint8
  std::vector<int64_t> full_areas, labels;
  const int64_t wanted = rng.integer(options_.min_objects, options_.max_objects);
  for (int64_t k = 0; k < wanted; ++k) {
    for (int attempt = 0; attempt < kPlacementTries; ++attempt) {
      const auto shape = static_cast<Shape>(rng.integer(kCircle, kStar));
      const double size = rng.uniform(options_.min_size, options_.max_size) * std::min(h, w);
      const double cx = rng.uniform(0.1, 0.9) * w, cy = rng.uniform(0.1, 0.9) * h;
      const cv::Mat mask = draw_shape(rng, shape, cx, cy, size, h, w);
      const int64_t area = cv::countNonZero(mask);
      if (area < options_.min_visible_area) continue;
      // Accept only if every earlier shape stays visible enough once this one covers it.
      bool hides_too_much = false;
      for (size_t j = 0; j < masks.size() && !hides_too_much; ++j) {
        const int64_t left = area_outside(masks[j], mask);
        hides_too_much = left < std::max<double>(options_.min_visible_area, options_.min_visible_fraction * full_areas[j]);
      }
      if (hides_too_much) continue;
      for (auto& earlier : masks) earlier.setTo(0, mask);  // occluded pixels belong to the new shape
      std::vector<int64_t> covered;
      covered.reserve(static_cast<size_t>(area));
      for (int64_t i = 0; i < h * w; ++i) {
        if (mask.data[i]) covered.push_back(i);
      }
      // Colour far enough from the background under the shape to be seen (a few draws suffice).
      const Colour under = mean_colour(canvas, covered);
      Colour colour = random_colour(rng);
      for (int c = 0; c < 8 && colour_distance(colour, under) < 0.4; ++c) colour = random_colour(rng);
      add_noise(rng, canvas, 0.03, covered, [&](int64_t c, int64_t i, float v) { canvas.at(c, i) = colour[c] + v; });
      masks.push_back(mask);
      full_areas.push_back(area);
      labels.push_back(shape);
      break;
    }
  }

  Sample sample;
  // Quantised to 8 bits, so the PNG written by the COCO export holds exactly these pixels.
  for (float& v : canvas.pixels) v = std::nearbyint(std::clamp(v, 0.0f, 1.0f) * 255.0f) / 255.0f;
  sample.image = torch::from_blob(canvas.pixels.data(), {3, h, w}, torch::kFloat).clone();
  sample.image_id = index + 1;
  if (masks.empty()) {
    sample.targets = empty_targets(h, w);
  } else {
    auto stacked = torch::empty({static_cast<int64_t>(masks.size()), h, w}, torch::kUInt8);
    for (size_t j = 0; j < masks.size(); ++j) std::memcpy(stacked[j].data_ptr<uint8_t>(), masks[j].data, h * w);
    sample.targets.masks = stacked;
    sample.targets.boxes = mask_boxes(sample.targets.masks);
    sample.targets.labels = torch::tensor(labels, torch::kInt64);
  }
  return sample;
}

}  // namespace instseg::data
