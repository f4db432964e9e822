#pragma once
// Shared by the explain tests (tests/explain, tests/cli/explain_command_test.cpp): a tiny COCO
// file with one synthetic 96x128 image holding two instances, and a small model description.
// Public headers only, so the CLI tests can use it too.
#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "instseg/data/image_io.h"
#include "instseg/modeling/mask_rcnn.h"

namespace instseg::testing {

struct TinyCoco {
  std::string image;        // <dir>/shapes.png, 96 x 128 (height x width)
  std::string annotations;  // <dir>/instances.json: that image, categories 1 "bar" and 2 "disc"
};

// A bar twice as wide as high (category 1, x 12..60, y 30..54: its best anchors are not square)
// and a disc (category 2, centre (90, 50), radius 24) on a soft gradient, written as PNG with a
// COCO instances file of polygons.
inline TinyCoco write_tiny_coco(const std::string& dir) {
  std::filesystem::create_directories(dir);
  const int64_t height = 96, width = 128;
  const auto ys = torch::arange(height, torch::kFloat).view({height, 1}).expand({height, width});
  const auto xs = torch::arange(width, torch::kFloat).view({1, width}).expand({height, width});
  auto image = torch::stack({0.3 + 0.2 * xs / width, 0.35 + 0.2 * ys / height, torch::full({height, width}, 0.4)});
  const auto bar = (xs >= 12) & (xs < 60) & (ys >= 30) & (ys < 54);
  const auto disc = ((xs + 0.5 - 90) * (xs + 0.5 - 90) + (ys + 0.5 - 50) * (ys + 0.5 - 50)) < 24.0 * 24.0;
  const float bar_rgb[3] = {0.9f, 0.2f, 0.15f}, disc_rgb[3] = {0.1f, 0.3f, 0.9f};
  for (int c = 0; c < 3; ++c) {
    image[c].masked_fill_(bar, bar_rgb[c]);
    image[c].masked_fill_(disc, disc_rgb[c]);
  }
  TinyCoco files{dir + "/shapes.png", dir + "/instances.json"};
  data::write_image_png(files.image, image);

  nlohmann::json circle = nlohmann::json::array();
  for (int i = 0; i < 32; ++i) {
    const double t = 2 * M_PI * i / 32;
    circle.push_back(90 + 24 * std::cos(t));
    circle.push_back(50 + 24 * std::sin(t));
  }
  const nlohmann::json coco = {
      {"images", {{{"id", 1}, {"file_name", "shapes.png"}, {"height", height}, {"width", width}}}},
      {"categories", {{{"id", 1}, {"name", "bar"}}, {{"id", 2}, {"name", "disc"}}}},
      {"annotations",
       {{{"id", 1}, {"image_id", 1}, {"category_id", 1}, {"iscrowd", 0}, {"area", 1152},
         {"bbox", {12, 30, 48, 24}}, {"segmentation", {{12, 30, 60, 30, 60, 54, 12, 54}}}},
        {{"id", 2}, {"image_id", 1}, {"category_id", 2}, {"iscrowd", 0}, {"area", 1809.6},
         {"bbox", {66, 26, 48, 48}}, {"segmentation", {circle}}}}}};
  std::ofstream(files.annotations) << coco.dump();
  return files;
}

// ResNet-18-FPN v1 with narrow heads, resizing the 96x128 image to 80x106 (padded back to 96x128,
// so both the resize and the padding are exercised): what the explain tests check does not depend
// on depth or width, and this runs in a fraction of a second.
inline MaskRcnnOptions small_model_options(int num_classes = 3) {
  MaskRcnnOptions o = MaskRcnnOptions::v1();
  o.num_classes = num_classes;
  o.backbone.depth = 18;
  o.backbone.out_channels = 64;
  o.roi_heads.representation_size = 256;
  o.roi_heads.mask_channels = 64;
  o.transform.min_size = {80};
  o.transform.max_size = 160;
  return o;
}

}  // namespace instseg::testing
