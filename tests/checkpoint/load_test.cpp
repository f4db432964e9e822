// Loading state dicts into module trees named like torchvision's, old-key upgrades, ImageNet
// backbones and checkpoint recognition.
#include "instseg/checkpoint/load.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "checkpoint/test_util.h"
#include "instseg/checkpoint/describe.h"
#include "instseg/checkpoint/torchvision_keys.h"
#include "instseg/errors.h"

namespace instseg {
namespace {

using ::testing::HasSubstr;
using testing::checkpoint_error_of;
using testing::checkpoint_ref;

bool is_buffer(const std::string& name) {
  for (const char* suffix : {".running_mean", ".running_var", ".num_batches_tracked"}) {
    const std::string s = suffix;
    if (name.size() > s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0) return true;
  }
  return false;
}

// Stands in for our real modules: plain Modules along each dotted path, zero-filled leaves.
std::shared_ptr<torch::nn::Module> make_tree(const std::vector<std::pair<std::string, std::vector<int64_t>>>& entries) {
  auto root = std::make_shared<torch::nn::Module>();
  for (const auto& [name, shape] : entries) {
    torch::nn::Module* m = root.get();
    size_t start = 0;
    for (size_t dot; (dot = name.find('.', start)) != std::string::npos; start = dot + 1) {
      const std::string part = name.substr(start, dot - start);
      auto children = m->named_children();
      m = children.contains(part) ? children[part].get()
                                  : m->register_module(part, std::make_shared<torch::nn::Module>()).get();
    }
    const auto zeros = torch::zeros(shape, name.find("num_batches") != std::string::npos ? torch::kLong : torch::kFloat);
    if (is_buffer(name)) {
      m->register_buffer(name.substr(start), zeros);
    } else {
      m->register_parameter(name.substr(start), zeros);
    }
  }
  return root;
}

std::shared_ptr<torch::nn::Module> tree_like(const StateDict& sd) {
  std::vector<std::pair<std::string, std::vector<int64_t>>> entries;
  for (const auto& [name, t] : sd) entries.emplace_back(name, t.sizes().vec());
  return make_tree(entries);
}

const std::vector<std::pair<std::string, std::vector<int64_t>>> kSmall = {
    {"backbone.body.conv1.weight", {4, 3, 3, 3}},
    {"backbone.body.bn1.weight", {4}},
    {"backbone.body.bn1.running_mean", {4}},
    {"backbone.body.bn1.num_batches_tracked", {}},
    {"rpn.head.conv.0.0.weight", {4, 4, 3, 3}},
    {"roi_heads.box_predictor.cls_score.weight", {2, 8}},
};

StateDict random_like(const std::vector<std::pair<std::string, std::vector<int64_t>>>& entries) {
  torch::manual_seed(0);
  StateDict sd;
  for (const auto& [name, shape] : entries) {
    if (name.find("num_batches") == std::string::npos) sd.emplace_back(name, torch::randn(shape));
  }
  return sd;
}

TEST(LoadStateDict, CopiesParametersAndBuffersByDottedName) {
  auto model = make_tree(kSmall);
  const auto sd = random_like(kSmall);  // without num_batches_tracked, like FrozenBatchNorm2d checkpoints
  const auto report = load_state_dict(*model, sd, "small.pth");
  EXPECT_EQ(report.loaded, 5);
  EXPECT_TRUE(report.missing.empty());
  const auto loaded = module_state_dict(*model);
  ASSERT_EQ(loaded.size(), kSmall.size());
  for (size_t i = 0; i < sd.size(); ++i) {
    const size_t j = i < 3 ? i : i + 1;  // skip bn1.num_batches_tracked, which the file lacks
    EXPECT_EQ(loaded[j].first, sd[i].first);
    EXPECT_TRUE(torch::equal(loaded[j].second, sd[i].second)) << sd[i].first;
  }
}

TEST(LoadStateDict, ReportsEveryProblemInOneErrorAndCopiesNothing) {
  auto model = make_tree(kSmall);
  auto sd = random_like(kSmall);
  sd[4].second = torch::randn({91, 8});       // cls_score for COCO, model has 2 classes
  sd.erase(sd.begin() + 3);                   // rpn conv missing
  sd.emplace_back("roi_heads.extra.weight", torch::ones({1}));
  EXPECT_EQ(checkpoint_error_of([&] { load_state_dict(*model, sd, "model.pth"); }),
            "model.pth: state dict does not fit the model; 1 mis-shaped: key "
            "'roi_heads.box_predictor.cls_score.weight' has shape [91, 8], model expects [2, 8]; "
            "1 missing: 'rpn.head.conv.0.0.weight'; 1 unexpected: 'roi_heads.extra.weight'");
  EXPECT_EQ(module_state_dict(*model)[0].second.abs().sum().item<float>(), 0.0f);
}

TEST(LoadStateDict, NonStrictReportsMissingAndUnexpectedButStillRejectsShapes) {
  auto model = make_tree(kSmall);
  auto sd = random_like(kSmall);
  sd.erase(sd.begin() + 3);  // rpn conv
  for (int i = 0; i < 12; ++i) sd.emplace_back("extra." + std::to_string(i), torch::ones({1}));
  const auto report = load_state_dict(*model, sd, "model.pth", {.strict = false});
  EXPECT_EQ(report.loaded, 4);
  EXPECT_EQ(report.missing, std::vector<std::string>{"'rpn.head.conv.0.0.weight'"});
  EXPECT_EQ(report.unexpected.size(), 12u);
  // Strict, the long list is cut after ten names and says how many more there are.
  EXPECT_THAT(checkpoint_error_of([&] { load_state_dict(*model, sd, "model.pth"); }),
              HasSubstr("12 unexpected: 'extra.0', 'extra.1', 'extra.2', 'extra.3', 'extra.4', 'extra.5', "
                        "'extra.6', 'extra.7', 'extra.8', 'extra.9', ... (2 more)"));
  sd[0].second = torch::ones({1});
  EXPECT_THAT(checkpoint_error_of([&] { load_state_dict(*model, sd, "model.pth", {.strict = false}); }),
              HasSubstr("key 'backbone.body.conv1.weight' has shape [1], model expects [4, 3, 3, 3]"));
}

TEST(LoadStateDict, TorchvisionMaskRcnnIntoATreeWithItsNames) {
  const auto sd = read_state_dict(checkpoint_ref("maskrcnn_v1.pth"));
  auto model = tree_like(sd);
  EXPECT_EQ(load_state_dict(*model, sd, "maskrcnn_v1.pth").loaded, int(sd.size()));
  const std::map<std::string, torch::Tensor> by_name(sd.begin(), sd.end());
  EXPECT_TRUE(torch::equal(model->named_parameters()["roi_heads.box_head.fc6.weight"],
                           by_name.at("roi_heads.box_head.fc6.weight")));
  EXPECT_TRUE(torch::equal(model->named_buffers()["backbone.body.layer1.0.downsample.1.running_var"],
                           by_name.at("backbone.body.layer1.0.downsample.1.running_var")));

  // A model built for 2 classes names the COCO head shapes it cannot take.
  auto sd2 = sd;
  for (auto& [name, t] : sd2) {
    if (name.rfind("roi_heads.box_predictor.cls_score.", 0) == 0) t = t.narrow(0, 0, 2);
  }
  auto two_class = tree_like(sd2);
  EXPECT_THAT(checkpoint_error_of([&] { load_state_dict(*two_class, sd, "model.pth"); }),
              HasSubstr("model.pth: state dict does not fit the model; 2 mis-shaped: key "
                        "'roi_heads.box_predictor.cls_score.weight' has shape [91, 1024], model expects [2, 1024], "
                        "key 'roi_heads.box_predictor.cls_score.bias' has shape [91], model expects [2]"));
}

TEST(TorchvisionKeys, UpgradesPre013NamesLikeTorchvision) {
  const StateDict old = {{"backbone.fpn.inner_blocks.3.weight", {}}, {"backbone.fpn.layer_blocks.0.bias", {}},
                         {"rpn.head.conv.weight", {}},             {"rpn.head.cls_logits.weight", {}},
                         {"roi_heads.mask_head.mask_fcn4.bias", {}}, {"roi_heads.mask_head.0.0.weight", {}},
                         {"backbone.fpn.extra_blocks.p6.weight", {}}};
  std::vector<std::string> names;
  for (const auto& [name, t] : upgrade_torchvision_keys(old)) names.push_back(name);
  EXPECT_EQ(names, (std::vector<std::string>{"backbone.fpn.inner_blocks.3.0.weight", "backbone.fpn.layer_blocks.0.0.bias",
                                             "rpn.head.conv.0.0.weight", "rpn.head.cls_logits.weight",
                                             "roi_heads.mask_head.3.0.bias", "roi_heads.mask_head.0.0.weight",
                                             "backbone.fpn.extra_blocks.p6.weight"}));
}

TEST(TorchvisionKeys, OldLayoutCheckpointLoadsStrictlyAfterUpgrade) {
  const auto old = read_state_dict(checkpoint_ref("maskrcnn_v1_oldkeys.pth"));
  const auto current = read_state_dict(checkpoint_ref("maskrcnn_v1.pth"));
  auto model = tree_like(current);
  EXPECT_THAT(checkpoint_error_of([&] { load_state_dict(*model, old, "coco.pth"); }), HasSubstr("26 missing"));
  const auto upgraded = upgrade_torchvision_keys(old);
  EXPECT_EQ(load_state_dict(*model, upgraded, "coco.pth").loaded, int(current.size()));
  const auto loaded = module_state_dict(*model);
  ASSERT_EQ(loaded.size(), current.size());
  for (size_t i = 0; i < current.size(); ++i) {
    EXPECT_EQ(upgraded[i].first, current[i].first);
    EXPECT_TRUE(torch::equal(loaded[i].second, current[i].second)) << current[i].first;
  }
}

TEST(TorchvisionKeys, ImageNetResNetLoadsIntoTheBackboneOnly) {
  const auto detector = read_state_dict(checkpoint_ref("maskrcnn_v1.pth"));
  const auto resnet = read_state_dict(checkpoint_ref("resnet50.pth"));
  auto model = tree_like(detector);
  const auto body = imagenet_to_backbone(resnet);
  EXPECT_EQ(body.size(), resnet.size() - 2);  // fc.weight and fc.bias dropped
  const auto report = load_state_dict(*model, body, "resnet50.pth", {.scope = "backbone.body."});
  EXPECT_EQ(report.loaded, int(body.size()));
  const auto params = model->named_parameters();
  EXPECT_TRUE(torch::equal(params["backbone.body.layer4.2.conv3.weight"],
                           std::map<std::string, torch::Tensor>(resnet.begin(), resnet.end()).at("layer4.2.conv3.weight")));
  EXPECT_EQ(params["rpn.head.conv.0.0.weight"].abs().sum().item<float>(), 0.0f);  // outside the scope: untouched
  // Within the scope loading stays strict.
  auto partial = body;
  partial.pop_back();
  partial.pop_back();
  EXPECT_THAT(checkpoint_error_of([&] { load_state_dict(*model, partial, "resnet50.pth", {.scope = "backbone.body."}); }),
              HasSubstr("(under 'backbone.body.'); 1 missing: 'backbone.body.layer4.2.bn3.running_var'"));
}

TEST(DescribeCheckpoint, RecognisesTorchvisionModels) {
  const auto v1 = describe_checkpoint(read_state_dict(checkpoint_ref("maskrcnn_v1.pth")), "v1.pth");
  EXPECT_EQ(to_string(v1), "Mask R-CNN v1, ResNet-50-FPN, 91 classes");
  EXPECT_EQ(v1.kind, CheckpointKind::kMaskRcnn);
  EXPECT_TRUE(v1.has_masks);
  EXPECT_EQ(to_string(describe_checkpoint(read_state_dict(checkpoint_ref("maskrcnn_v2.pth")), "v2.pth")),
            "Mask R-CNN v2, ResNet-50-FPN, 91 classes");
  EXPECT_EQ(require_mask_rcnn(read_state_dict(checkpoint_ref("maskrcnn_v1_oldkeys.pth")), "coco.pth").version, 1);
  const auto resnet = describe_checkpoint(read_state_dict(checkpoint_ref("resnet50.pth")), "r.pth");
  EXPECT_EQ(resnet.kind, CheckpointKind::kImageNetResNet);
  EXPECT_EQ(resnet.depth, 50);
  EXPECT_EQ(resnet.num_classes, 1000);
}

TEST(DescribeCheckpoint, DepthFromLayer3BlocksAndBlockType) {
  StateDict sd = {{"conv1.weight", {}}, {"layer1.0.conv1.weight", {}}, {"fc.weight", torch::zeros({10, 2})}};
  for (int i = 0; i < 23; ++i) sd.emplace_back("layer3." + std::to_string(i) + ".conv1.weight", torch::Tensor());
  EXPECT_THAT(checkpoint_error_of([&] { describe_checkpoint(sd, "r.pth"); }),
              HasSubstr("r.pth: unrecognised ResNet: 'layer3.*' has 23 basic blocks"));
  sd.emplace_back("layer1.0.conv3.weight", torch::Tensor());
  EXPECT_EQ(describe_checkpoint(sd, "r.pth").depth, 101);
}

TEST(DescribeCheckpoint, OtherArchitecturesGetOneClearError) {
  EXPECT_EQ(checkpoint_error_of([&] { require_mask_rcnn(read_state_dict(checkpoint_ref("resnet50.pth")), "resnet50.pth"); }),
            "resnet50.pth: is an ImageNet ResNet-50 (1000 classes) classification checkpoint, not a Mask R-CNN "
            "detector; it can only initialise the backbone");
  EXPECT_EQ(checkpoint_error_of([&] { require_mask_rcnn(read_state_dict(checkpoint_ref("fasterrcnn.pth")), "f.pth"); }),
            "f.pth: is a Faster R-CNN v1, ResNet-50-FPN, 91 classes checkpoint without a mask head "
            "('roi_heads.mask_predictor.*'); a Mask R-CNN is needed");
  EXPECT_EQ(checkpoint_error_of([&] { require_mask_rcnn(read_state_dict(checkpoint_ref("garbage_keys.pth")), "g.pth"); }),
            "g.pth: not a torchvision Mask R-CNN, Faster R-CNN or ResNet checkpoint: it has neither "
            "'roi_heads.box_predictor.cls_score.weight' nor 'fc.weight' (2 keys: 'encoder.weight', 'decoder.bias')");
}

}  // namespace
}  // namespace instseg
