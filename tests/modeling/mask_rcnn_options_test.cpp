// MaskRcnnOptions::validate(): every message starts with the option's path relative to
// MaskRcnnOptions, so the config layer makes it a config key by prefixing "model.".
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "instseg/errors.h"
#include "instseg/modeling/mask_rcnn.h"

namespace instseg {
namespace {

struct BadOption {
  std::string path;  // what the message must start with
  std::function<void(MaskRcnnOptions&)> set;
};

std::string message_of(const MaskRcnnOptions& options) {
  try {
    options.validate();
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "(accepted)";
}

TEST(MaskRcnnOptions, EveryValidateMessageStartsWithTheOptionPath) {
  using O = MaskRcnnOptions;
  const std::vector<BadOption> cases{
      {"num_classes", [](O& o) { o.num_classes = 1; }},
      {"backbone.depth", [](O& o) { o.backbone.depth = 42; }},
      {"backbone.norm", [](O& o) { o.backbone.norm = NormKind::kNone; }},
      {"backbone.trainable_layers", [](O& o) { o.backbone.trainable_layers = 6; }},
      {"backbone.fpn_norm", [](O& o) { o.backbone.fpn_norm = NormKind::kFrozenBatchNorm; }},
      {"backbone.out_channels", [](O& o) { o.backbone.out_channels = 0; }},
      {"backbone.out_channels", [](O& o) { o.backbone.fpn_norm = NormKind::kGroupNorm, o.backbone.out_channels = 48; }},
      {"backbone.returned_layers", [](O& o) { o.backbone.returned_layers = {}; }},
      {"backbone.returned_layers", [](O& o) { o.backbone.returned_layers = {3, 2}; }},
      {"backbone.returned_layers", [](O& o) { o.backbone.returned_layers = {0, 1}; }},
      {"backbone.returned_layers", [](O& o) { o.backbone.returned_layers = {3, 5}; }},
      {"backbone.returned_layers", [](O& o) { o.backbone.returned_layers = {2, 2}; }},
      // Three returned layers and "pool" are four maps, the default anchors five levels.
      {"anchors.sizes", [](O& o) { o.backbone.returned_layers = {1, 2, 3}; }},
      {"transform.min_size", [](O& o) { o.transform.min_size = {}; }},
      {"transform.min_size", [](O& o) { o.transform.min_size = {800, 0}; }},
      {"transform.max_size", [](O& o) { o.transform.max_size = 0; }},
      {"transform.image_std", [](O& o) { o.transform.image_std[1] = 0; }},
      {"transform.size_divisible", [](O& o) { o.transform.size_divisible = 0; }},
      {"anchors.sizes", [](O& o) { o.anchors.sizes.pop_back(); }},
      {"anchors.sizes[2]", [](O& o) { o.anchors.sizes[2] = {}; }},
      {"anchors.sizes[1]", [](O& o) { o.anchors.sizes[1] = {-4}; }},
      {"anchors.aspect_ratios[0]", [](O& o) { o.anchors.aspect_ratios[0] = {1.0, 0.0}; }},
      {"rpn.pre_nms_top_n_train", [](O& o) { o.rpn.pre_nms_top_n_train = 0; }},
      {"rpn.pre_nms_top_n_test", [](O& o) { o.rpn.pre_nms_top_n_test = 0; }},
      {"rpn.post_nms_top_n_train", [](O& o) { o.rpn.post_nms_top_n_train = 0; }},
      {"rpn.post_nms_top_n_test", [](O& o) { o.rpn.post_nms_top_n_test = -1; }},
      {"rpn.nms_thresh", [](O& o) { o.rpn.nms_thresh = 1.5; }},
      {"rpn.score_thresh", [](O& o) { o.rpn.score_thresh = 1.0; }},
      {"rpn.min_size", [](O& o) { o.rpn.min_size = -1; }},
      {"rpn.bg_iou_thresh", [](O& o) { o.rpn.bg_iou_thresh = -0.1; }},
      {"rpn.fg_iou_thresh", [](O& o) { o.rpn.fg_iou_thresh = 0.2; }},
      {"rpn.batch_size_per_image", [](O& o) { o.rpn.batch_size_per_image = 0; }},
      {"rpn.positive_fraction", [](O& o) { o.rpn.positive_fraction = 2; }},
      {"rpn.conv_depth", [](O& o) { o.rpn.conv_depth = 0; }},
      {"roi_heads.score_thresh", [](O& o) { o.roi_heads.score_thresh = 1; }},
      {"roi_heads.nms_thresh", [](O& o) { o.roi_heads.nms_thresh = 0; }},
      {"roi_heads.detections_per_img", [](O& o) { o.roi_heads.detections_per_img = 0; }},
      {"roi_heads.fg_iou_thresh", [](O& o) { o.roi_heads.fg_iou_thresh = 2; }},
      {"roi_heads.bg_iou_thresh", [](O& o) { o.roi_heads.bg_iou_thresh = 0.8; }},
      {"roi_heads.batch_size_per_image", [](O& o) { o.roi_heads.batch_size_per_image = 0; }},
      {"roi_heads.positive_fraction", [](O& o) { o.roi_heads.positive_fraction = 0; }},
      {"roi_heads.bbox_reg_weights", [](O& o) { o.roi_heads.bbox_reg_weights[3] = 0; }},
      {"roi_heads.representation_size", [](O& o) { o.roi_heads.representation_size = 0; }},
      {"roi_heads.mask_channels", [](O& o) { o.roi_heads.mask_channels = 0; }},
      {"roi_heads.mask_channels", [](O& o) { o.roi_heads.head_norm = NormKind::kGroupNorm, o.roi_heads.mask_channels = 48; }},
      {"roi_heads.head_norm", [](O& o) {
         o = MaskRcnnOptions::v2();
         o.roi_heads.head_norm = NormKind::kGroupNorm;
         o.backbone.out_channels = 48;
       }},
  };
  EXPECT_EQ(message_of(MaskRcnnOptions::v1()), "(accepted)");
  EXPECT_EQ(message_of(MaskRcnnOptions::v2()), "(accepted)");
  for (const auto& c : cases) {
    MaskRcnnOptions options;
    c.set(options);
    const auto message = message_of(options);
    // The path, then its rule: "rpn.nms_thresh must be in (0, 1], got 1.5".
    EXPECT_THAT(message, ::testing::AnyOf(::testing::StartsWith(c.path + " "),
                                          ::testing::StartsWith(c.path + "[")))
        << c.path;
  }
  // Fewer returned layers with one anchor level fewer per layer dropped: a valid model.
  MaskRcnnOptions three_levels;
  three_levels.backbone.returned_layers = {2, 4};
  three_levels.anchors.sizes.resize(3);
  three_levels.anchors.aspect_ratios.resize(3);
  EXPECT_EQ(message_of(three_levels), "(accepted)");
  three_levels.backbone.returned_layers = {1, 2, 3, 4};
  EXPECT_EQ(message_of(three_levels),
            "anchors.sizes has 3 levels; the backbone's 4 returned_layers and \"pool\" make 5 feature maps, one "
            "anchor level each");
  // Values print as written, integers without decimals.
  MaskRcnnOptions options;
  options.rpn.post_nms_top_n_test = 0;
  EXPECT_EQ(message_of(options), "rpn.post_nms_top_n_test must be positive, got 0");
  options = {};
  options.rpn.nms_thresh = 1.5;
  EXPECT_EQ(message_of(options), "rpn.nms_thresh must be in (0, 1], got 1.5");
  options = {};
  options.anchors.sizes[1] = {-4};
  EXPECT_EQ(message_of(options), "anchors.sizes[1] must be positive, got -4");
  options = {};
  options.roi_heads.positive_fraction = 1.25;
  EXPECT_EQ(message_of(options), "roi_heads.positive_fraction must be in (0, 1], got 1.25");
}

}  // namespace
}  // namespace instseg
