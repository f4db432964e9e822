// Training against torchvision: which proposals the RoI heads learn from
// (select_training_samples) and the whole loss dict of a training step (MaskRcnn::losses), on
// the values tests/reference/training_parity.py writes. Both sides draw every random choice
// (the transform's scale, the RPN and RoI samplers) from torch's default generator in the same
// order, so seeding it gives the same samples.
#include "instseg/modeling/roi_heads/training_samples.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>
#include <vector>

#include "instseg/modeling/mask_rcnn.h"
#include "modeling/rcnn_reference.h"

namespace instseg {
namespace {

testing::TensorDict load(const std::string& name) {
  return testing::load_tensors(testing::reference_dir("training_parity") + "/" + name + ".pt");
}

std::string at(const char* key, size_t i) { return std::string(key) + "_" + std::to_string(i); }

struct ThreadsGuard {
  explicit ThreadsGuard(int n) : previous(torch::get_num_threads()) { torch::set_num_threads(n); }
  ~ThreadsGuard() { torch::set_num_threads(previous); }
  int previous;
};

// max |a - b| over the entries that are not exactly equal (so equal infinities count as 0).
double differing(const torch::Tensor& a, const torch::Tensor& b) {
  const auto diff = (a.to(torch::kDouble) - b.to(torch::kDouble)).abs();
  return torch::where(a == b, torch::zeros_like(diff), diff).max().item<double>();
}

int64_t count(const torch::Tensor& labels, bool positive) {
  return (positive ? labels > 0 : labels == 0).sum().item<int64_t>();
}

// Cases (see sample_cases() in the script):
//   defaults: torchvision's 512 / 0.25 against RoiHeadsOptions{} unchanged; one image under the
//             128-positive quota, one over it.
//   quota:    64 / 0.25 over three images: more positives than the quota, an image without ground
//             truth, an image with too few negatives to fill the sample.
//   ties:     96 / 0.4; an image with no proposals (only its GT boxes); duplicate GT boxes, a
//             proposal equally close to two GT boxes, IoU exactly 0.5 and just either side.
class TrainingSamples : public ::testing::TestWithParam<const char*> {};

TEST_P(TrainingSamples, EqualTorchvisionsSelection) {
  const std::string name = GetParam();
  const auto d = load("samples_" + name);
  RoiHeadsOptions options;
  if (name == "defaults") {
    // Our defaults must be torchvision's: the reference used MaskRCNN's.
    ASSERT_EQ(d.at("batch_size").item<int64_t>(), 512);
    ASSERT_EQ(d.at("positive_fraction").item<double>(), 0.25);
  } else {
    options.batch_size_per_image = d.at("batch_size").item<int64_t>();
    options.positive_fraction = d.at("positive_fraction").item<double>();
  }
  std::vector<torch::Tensor> proposals;
  std::vector<Targets> targets;
  for (size_t i = 0; d.count(at("proposals", i)); ++i) {
    proposals.push_back(d.at(at("proposals", i)));
    targets.push_back({d.at(at("gt_boxes", i)), d.at(at("gt_labels", i)), torch::Tensor()});
  }
  ASSERT_GE(proposals.size(), 2u);

  torch::manual_seed(d.at("seed").item<int64_t>());
  const auto samples = select_training_samples(proposals, targets, options);
  // The next draw equal to torchvision's: the selection consumed the generator exactly as much,
  // so a training step's later draws stay in step too.
  EXPECT_TRUE(torch::equal(torch::rand({1}), d.at("after"))) << name << ": generator out of step";

  ASSERT_EQ(samples.size(), proposals.size());
  for (size_t i = 0; i < samples.size(); ++i) {
    const auto& s = samples[i];
    const auto& labels = d.at(at("labels", i));
    SCOPED_TRACE(name + " image " + std::to_string(i));
    ASSERT_EQ(s.labels.size(0), labels.size(0))
        << "sample size; ours " << count(s.labels, true) << " positive + " << count(s.labels, false)
        << " negative, torchvision " << count(labels, true) << " + " << count(labels, false);
    EXPECT_TRUE(torch::equal(s.labels, labels))
        << (s.labels != labels).sum().item<int64_t>() << " labels differ; positives ours "
        << count(s.labels, true) << ", torchvision " << count(labels, true);
    EXPECT_TRUE(torch::equal(s.matched_idxs, d.at(at("matched", i))))
        << (s.matched_idxs != d.at(at("matched", i))).sum().item<int64_t>() << " matched indices differ";
    EXPECT_TRUE(torch::equal(s.proposals, d.at(at("sampled_proposals", i))))
        << (s.proposals != d.at(at("sampled_proposals", i))).any(1).sum().item<int64_t>()
        << " sampled proposals differ";
    const auto& regression = d.at(at("regression_targets", i));
    ASSERT_EQ(s.regression_targets.sizes(), regression.sizes());
    // Same fp32 formula on the same boxes; 1e-6 allows a different operation order. Background
    // rows of an image without ground truth are encoded against a zero box: -inf on both sides.
    EXPECT_LE(differing(s.regression_targets, regression), 1e-6);
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, TrainingSamples, ::testing::Values("defaults", "quota", "ties"));

// The reference cases exercise what they claim (a change to the script cannot quietly drop one).
TEST(TrainingSamples, ReferenceCasesCoverTheEdges) {
  const auto defaults = load("samples_defaults");
  EXPECT_LT(count(defaults.at("labels_0"), true), 128);  // under the 512 x 0.25 quota
  EXPECT_EQ(count(defaults.at("labels_1"), true), 128);  // capped by it
  EXPECT_EQ(defaults.at("labels_1").size(0), 512);
  const auto quota = load("samples_quota");
  EXPECT_EQ(quota.at("gt_boxes_1").size(0), 0);          // an image without ground truth
  EXPECT_EQ(count(quota.at("labels_1"), false), 64);
  EXPECT_LT(quota.at("labels_2").size(0), 64);           // too few negatives to fill the sample
  const auto ties = load("samples_ties");
  EXPECT_EQ(ties.at("proposals_1").size(0), 0);          // only the GT boxes as candidates
  // Duplicate GT boxes 0 and 1: each proposal matches one of them, as torch's max picks.
  const auto matched = ties.at("matched_2");
  EXPECT_TRUE((matched != 1).all().item<bool>());
}

// The whole training step: transform with a random scale per image, ResNet-18-FPN, RPN losses
// over sampled anchors, RoI training samples, box and mask losses, and the gradients of their sum.
TEST(MaskRcnnTrainingLoss, LossDictAndGradientsMatchTorchvision) {
  const auto d = load("model");
  // One thread, as the reference: how a convolution's sums are split over threads changes its
  // result by ~1e-6, enough to reorder two proposals of near-equal objectness and so the sample.
  const ThreadsGuard threads(1);
  MaskRcnnOptions options;
  options.num_classes = d.at("num_classes").item<int>();
  options.backbone.depth = d.at("depth").item<int>();
  options.transform.min_size.clear();
  for (int64_t i = 0; i < d.at("min_sizes").size(0); ++i) {
    options.transform.min_size.push_back(d.at("min_sizes")[i].item<int64_t>());
  }
  options.transform.max_size = d.at("max_size").item<int64_t>();
  options.roi_heads.representation_size = d.at("representation_size").item<int64_t>();
  options.roi_heads.mask_channels = d.at("mask_channels").item<int64_t>();
  MaskRcnn model(options);
  int64_t num_weights = 0;
  for (const auto& [key, value] : d) num_weights += key.rfind("weights.", 0) == 0;
  ASSERT_EQ(testing::copy_state_counted(*model, d, "weights."), num_weights);
  model->train();

  std::vector<torch::Tensor> images;
  std::vector<Targets> targets;
  for (size_t i = 0; d.count(at("image", i)); ++i) {
    images.push_back(d.at(at("image", i)));
    targets.push_back({d.at(at("boxes", i)), d.at(at("labels", i)), d.at(at("masks", i))});
  }
  ASSERT_EQ(images.size(), 2u);

  torch::manual_seed(d.at("seed").item<int64_t>());
  const auto losses = model->losses(images, targets);
  EXPECT_TRUE(torch::equal(torch::rand({1}), d.at("after"))) << "generator out of step";

  // With one thread the same kernels compute the same numbers: measured equal to the last bit.
  // 1e-6 relative (~8 fp32 ulps) leaves room for a reordered reduction only; the smallest
  // change a broken build made (mask targets sampled 2x2 per bin instead of adaptively) moved
  // loss_mask by 1e-4 relative, an RPN fg threshold of 0.6 moved loss_objectness by 6e-5.
  ASSERT_EQ(losses.size(), 5u);
  for (const char* name :
       {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg", "loss_mask"}) {
    ASSERT_TRUE(losses.count(name)) << name;
    const double ours = losses.at(name).item<double>();
    const double theirs = d.at(std::string("loss.") + name).item<double>();
    EXPECT_NEAR(ours, theirs, 1e-6 * std::abs(theirs)) << name;
  }

  torch::Tensor total = torch::zeros({});
  for (const auto& [name, value] : losses) total = total + value;
  total.backward();
  std::map<std::string, torch::Tensor> parameters;
  for (const auto& p : model->named_parameters()) parameters[p.key()] = p.value();
  int compared = 0;
  for (const auto& [key, expected] : d) {
    if (key.rfind("grad.", 0) != 0) continue;
    const auto name = key.substr(5);
    ASSERT_TRUE(parameters.count(name)) << name;
    const auto& grad = parameters.at(name).grad();
    ASSERT_TRUE(grad.defined()) << name << " has no gradient";
    // Relative to the gradient's largest entry: measured <= 3e-8 absolute (the summed losses and
    // backward's accumulation in another order), 1e-5 relative allows that and no more.
    const double scale = expected.abs().max().item<double>();
    ASSERT_GT(scale, 0.0) << name;
    EXPECT_LE(testing::max_abs_diff(grad, expected), 1e-5 * scale) << name << ", largest entry " << scale;
    ++compared;
  }
  EXPECT_GE(compared, 8);
}

}  // namespace
}  // namespace instseg
