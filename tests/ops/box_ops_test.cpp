#include "instseg/ops/box_ops.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "instseg/ops/box_coder.h"
#include "support/reference.h"

namespace instseg::ops {
namespace {

std::map<std::string, torch::Tensor> load(const std::string& name) {
  return testing::load_tensors(testing::reference_dir("ops") + "/" + name + ".pt");
}

TEST(BoxOps, AreaOfHandMadeBoxes) {
  const auto boxes = torch::tensor(
      {{0.0f, 0.0f, 4.0f, 3.0f}, {1.0f, 1.0f, 1.0f, 5.0f}, {-2.0f, -2.0f, 2.0f, 0.5f}});
  EXPECT_TRUE(torch::equal(box_area(boxes), torch::tensor({12.0f, 0.0f, 10.0f})));
  // Small integer types are widened so products cannot overflow (torchvision's _upcast).
  const auto big = torch::tensor({{0, 0, 200, 200}}, torch::kShort);
  EXPECT_EQ(box_area(big).item<int64_t>(), 40000);
}

TEST(BoxOps, IouMatchesTorchvision) {
  const auto d = load("box_iou");
  const auto iou = box_iou(d.at("boxes1"), d.at("boxes2"));
  ASSERT_EQ(iou.sizes(), d.at("iou").sizes());
  EXPECT_TRUE(torch::allclose(iou, d.at("iou"), 1e-6, 1e-7));
  EXPECT_GT(iou.max().item<float>(), 0.2f);
}

TEST(BoxOps, ClipAndRemoveSmallMatchTorchvision) {
  const auto d = load("clip_remove");
  EXPECT_TRUE(torch::equal(clip_boxes_to_image(d.at("boxes"), 90, 110), d.at("clipped")));
  const auto keep = remove_small_boxes(d.at("boxes"), 3.0);
  EXPECT_TRUE(torch::equal(keep, d.at("keep")));
  EXPECT_LT(keep.size(0), d.at("boxes").size(0));
  // Clipping works on any [..., 4] layout, e.g. [K, C, 4] decoded boxes.
  const auto stacked = d.at("boxes").view({25, 2, 4});
  EXPECT_TRUE(
      torch::equal(clip_boxes_to_image(stacked, 90, 110), d.at("clipped").view({25, 2, 4})));
}

TEST(BoxCoder, EncodeAndDecodeMatchTorchvision) {
  for (const char* name : {"box_coder_rpn", "box_coder_head"}) {
    const auto d = load(name);
    BoxCoder coder;
    const auto w = d.at("weights");
    coder.weights = {w[0].item<double>(), w[1].item<double>(), w[2].item<double>(),
                     w[3].item<double>()};
    const auto encoded = coder.encode(d.at("gt"), d.at("proposals"));
    EXPECT_TRUE(torch::allclose(encoded, d.at("encoded"), 1e-6, 1e-6)) << name;
    const auto decoded = coder.decode(d.at("deltas"), d.at("proposals"));
    ASSERT_EQ(decoded.sizes(), (std::vector<int64_t>{60, 3, 4})) << name;
    EXPECT_TRUE(torch::allclose(decoded, d.at("decoded"), 1e-6, 1e-4)) << name;
    // The first rows carry dw = dh = 50 / weight: clipped to log(1000 / 16), still finite.
    EXPECT_TRUE(torch::isfinite(decoded).all().item<bool>()) << name;
  }
}

TEST(BoxCoder, DecodeInvertsEncode) {
  torch::manual_seed(2);
  const auto xy = torch::rand({20, 2}, torch::kDouble) * 100;
  const auto proposals = torch::cat({xy, xy + 5 + torch::rand({20, 2}, torch::kDouble) * 50}, 1);
  const auto gt = proposals + torch::rand({20, 4}, torch::kDouble) - 0.5;  // widths stay > 0
  BoxCoder coder;
  coder.weights = {10, 10, 5, 5};
  const auto back = coder.decode(coder.encode(gt, proposals), proposals).squeeze(1);
  EXPECT_TRUE(torch::allclose(back, gt, 1e-9, 1e-9));
}

}  // namespace
}  // namespace instseg::ops
