// The entry point, not the module's mode, decides training vs inference behaviour: losses() is
// a training computation in either mode (eval only switches batch norm to its running
// statistics, what validation losses need) and draws from the generator it is given.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "instseg/modeling/mask_rcnn.h"

namespace instseg {
namespace {

using LossDict = std::map<std::string, torch::Tensor>;

// A small model where the RPN's training and inference limits differ by far: if losses() used
// the inference ones the RoI heads would learn from 8 proposals instead of 64.
MaskRcnnOptions small_options(MaskRcnnOptions options) {
  options.num_classes = 3;
  options.backbone.depth = 18;
  options.transform.min_size = {64, 80};  // a draw per image
  options.transform.max_size = 128;
  options.rpn.pre_nms_top_n_train = 200;
  options.rpn.pre_nms_top_n_test = 10;
  options.rpn.post_nms_top_n_train = 64;
  options.rpn.post_nms_top_n_test = 8;
  options.rpn.batch_size_per_image = 64;
  options.roi_heads.batch_size_per_image = 32;
  options.roi_heads.representation_size = 64;
  options.roi_heads.mask_channels = 16;
  return options;
}

struct Batch {
  std::vector<torch::Tensor> images;
  std::vector<Targets> targets;
};

Batch make_batch() {
  torch::manual_seed(11);
  Batch b;
  const std::vector<std::vector<float>> boxes{{8, 6, 40, 30}, {30, 20, 70, 55}};
  for (int i = 0; i < 2; ++i) {
    b.images.push_back(torch::rand({3, 60, 90}));
    auto masks = torch::zeros({1, 60, 90}, torch::kUInt8);
    const auto& x = boxes[i];
    masks.index_put_({0, torch::indexing::Slice(int64_t(x[1]), int64_t(x[3])),
                      torch::indexing::Slice(int64_t(x[0]), int64_t(x[2]))},
                     1);
    b.targets.push_back({torch::tensor(x).view({1, 4}), torch::tensor({i + 1}, torch::kLong), masks});
  }
  return b;
}

LossDict losses_with_seed(MaskRcnn& model, const Batch& b, uint64_t seed) {
  torch::manual_seed(seed);
  return model->losses(b.images, b.targets);
}

void expect_equal(const LossDict& a, const LossDict& b) {
  ASSERT_EQ(a.size(), 5u);
  ASSERT_EQ(b.size(), 5u);
  for (const auto& [name, value] : a) {
    ASSERT_TRUE(b.count(name)) << name;
    EXPECT_TRUE(torch::equal(value, b.at(name)))
        << name << ": " << value.item<double>() << " vs " << b.at(name).item<double>();
  }
}

std::map<std::string, torch::Tensor> buffers(torch::nn::Module& model) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& b : model.named_buffers()) out[b.key()] = b.value().clone();
  return out;
}

// v1 has no trainable statistics (frozen batch norm, no norm in FPN and heads): its losses in
// eval mode are its training losses, to the bit, with the same seed.
TEST(MaskRcnnEntryPoint, LossesInEvalModeEqualTrainModeWithFrozenBatchNorm) {
  torch::manual_seed(0);
  MaskRcnn model(small_options(MaskRcnnOptions::v1()));
  const auto batch = make_batch();
  model->train();
  const auto trained = losses_with_seed(model, batch, 7);
  model->eval();
  const auto validated = losses_with_seed(model, batch, 7);
  expect_equal(trained, validated);
  // Not a trivial equality: every term is a real, non-zero loss.
  for (const auto& [name, value] : trained) EXPECT_GT(value.item<double>(), 0.0) << name;
  // The seed matters (the draws are real), so equality above is not a coincidence of fixed inputs.
  const auto other = losses_with_seed(model, batch, 8);
  EXPECT_FALSE(torch::equal(other.at("loss_classifier"), validated.at("loss_classifier")));
}

// With batch norm (v2's FPN and heads), eval-mode losses use and keep the running statistics;
// train-mode losses update them.
TEST(MaskRcnnEntryPoint, LossesInEvalModeLeaveBatchNormStatisticsAlone) {
  torch::manual_seed(0);
  MaskRcnn model(small_options(MaskRcnnOptions::v2()));
  const auto batch = make_batch();
  const auto before = buffers(*model);
  model->eval();
  losses_with_seed(model, batch, 7);
  int trainable_norms = 0;  // FPN (8) and box and mask heads (4 + 4) batch norms
  for (const auto& [key, value] : buffers(*model)) {
    EXPECT_TRUE(torch::equal(value, before.at(key))) << key << " changed in eval mode";
    trainable_norms += key.rfind("backbone.body.", 0) != 0 && key.find("running_mean") != std::string::npos;
  }
  EXPECT_EQ(trainable_norms, 16);
  model->train();
  losses_with_seed(model, batch, 7);
  int changed = 0;
  for (const auto& [key, value] : buffers(*model)) changed += key.find("running_mean") != std::string::npos && !torch::equal(value, before.at(key));
  EXPECT_EQ(changed, 16) << "training mode updates every trainable batch norm's statistics";
}

// losses() with its own generator draws exactly what the default generator would with the same
// seed, and leaves the default generator where it was: validation cannot move training's draws.
TEST(MaskRcnnEntryPoint, LossesDrawFromTheGivenGenerator) {
  torch::manual_seed(0);
  MaskRcnn model(small_options(MaskRcnnOptions::v1()));
  const auto batch = make_batch();
  model->eval();
  const auto with_default = losses_with_seed(model, batch, 7);

  torch::manual_seed(123);
  const auto expected_next = torch::rand({4});
  torch::manual_seed(123);
  auto generator = at::detail::createCPUGenerator(7);
  const auto with_own = model->losses(batch.images, batch.targets, generator);
  EXPECT_TRUE(torch::equal(torch::rand({4}), expected_next)) << "losses() drew from the default generator";
  expect_equal(with_default, with_own);
}

}  // namespace
}  // namespace instseg
