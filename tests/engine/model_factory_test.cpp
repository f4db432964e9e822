// load_model's description of a model whose FPN is fed by fewer ResNet stages
// (backbone.returned_layers): the checkpoint alone cannot say which anchors it was trained with,
// its run's config.json can.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>
#include <vector>

#include "instseg/checkpoint/state_dict.h"
#include "instseg/engine/model_factory.h"
#include "instseg/engine/train_config.h"
#include "instseg/errors.h"
#include "support/test_dir.h"

namespace instseg {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

TEST(LoadModel, ABareCheckpointWithoutLayer4IsRefusedAndLoadsWithItsConfigBeside) {
  testing::TestDir dir;
  TrainConfig config;
  config.data.kind = "synthetic";
  auto& o = config.model.options;
  o.num_classes = 5;
  o.backbone.depth = 18;
  o.backbone.out_channels = 16;
  o.roi_heads.representation_size = 32;
  o.roi_heads.mask_channels = 16;
  o.backbone.returned_layers = {1, 2, 3};
  o.anchors.sizes = {{16}, {32}, {64}, {128}};
  o.anchors.aspect_ratios.resize(4);
  o.transform.min_size = {96};
  o.transform.max_size = 128;
  torch::manual_seed(0);
  MaskRcnn model(o);
  model->eval();
  const std::string weights = dir / "run/model_best.pth";
  dir.write("run/.keep", "");
  save_state_dict(weights, module_state_dict(*model));

  // Alone: one error naming the file, what is missing and what would describe it.
  EXPECT_THAT([&] { load_model(weights); },
              ::testing::ThrowsMessage<CheckpointError>(
                  AllOf(HasSubstr(weights), HasSubstr("backbone.body.layer4"), HasSubstr("returned_layers"),
                        HasSubstr("config.json"))));
  EXPECT_THROW(load_mask_rcnn(weights), CheckpointError);

  // With its config.json beside it: the same model, its anchors included, and its detections.
  dir.write("run/config.json", config.to_json());
  ModelOverrides module_code;
  module_code.fused = false;  // the same code as `model`, so the same bits
  LoadedModel loaded = load_model(weights, module_code);
  const auto& got = loaded.model->options();
  EXPECT_EQ(got.backbone.returned_layers, (std::vector<int>{1, 2, 3}));
  EXPECT_EQ(got.anchors.sizes, o.anchors.sizes);
  const auto image = torch::rand({3, 96, 128});
  const auto expected = model->predict({image})[0];
  const auto actual = loaded.model->predict({image})[0];
  ASSERT_EQ(actual.boxes.sizes(), expected.boxes.sizes());
  EXPECT_TRUE(torch::equal(actual.boxes, expected.boxes));
  EXPECT_TRUE(torch::equal(actual.scores, expected.scores));
}

}  // namespace
}  // namespace instseg
