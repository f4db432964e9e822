#include "instseg/ops/nms.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>

#include "instseg/ops/box_ops.h"
#include "support/reference.h"

namespace instseg::ops {
namespace {

using ::testing::HasSubstr;

std::map<std::string, torch::Tensor> load(const std::string& name) {
  return testing::load_tensors(testing::reference_dir("ops") + "/" + name + ".pt");
}

// Slow specification: walk boxes by rank, keep one unless a kept box overlaps it by > threshold.
torch::Tensor reference_nms(const torch::Tensor& boxes, const torch::Tensor& order,
                            double threshold) {
  const auto iou = box_iou(boxes, boxes);
  std::vector<int64_t> kept;
  for (int64_t r = 0; r < order.size(0); ++r) {
    const int64_t i = order[r].item<int64_t>();
    bool suppressed = false;
    for (int64_t k : kept) suppressed = suppressed || iou[k][i].item<double>() > threshold;
    if (!suppressed) kept.push_back(i);
  }
  return torch::tensor(kept, torch::kLong);
}

TEST(Nms, MatchesTorchvisionOnRandomBoxes) {
  for (const char* name : {"nms_random_3", "nms_random_5", "nms_random_7"}) {
    const auto d = load(name);
    const auto keep = nms(d.at("boxes"), d.at("scores"), d.at("threshold").item<double>());
    EXPECT_EQ(keep.scalar_type(), torch::kLong);
    EXPECT_TRUE(torch::equal(keep, d.at("keep")))
        << name << ": " << keep.size(0) << " vs " << d.at("keep").size(0) << " kept";
    EXPECT_GT(keep.size(0), 10);
    EXPECT_LT(keep.size(0), 300);
  }
}

TEST(Nms, MatchesSlowReference) {
  const auto d = load("nms_random_5");
  const auto order = std::get<1>(d.at("scores").sort(/*stable=*/true, 0, /*descending=*/true));
  EXPECT_TRUE(torch::equal(nms(d.at("boxes"), d.at("scores"), 0.5),
                           reference_nms(d.at("boxes"), order, 0.5)));
}

// Five distinct score values over 300 boxes: which of two tied overlapping boxes survives
// depends on the order among ties; torchvision's is by index (a stable sort).
TEST(Nms, ExactScoreTiesMatchTorchvision) {
  const auto d = load("nms_ties");
  const auto keep = nms(d.at("boxes"), d.at("scores"), 0.5);
  EXPECT_TRUE(torch::equal(keep, d.at("keep")));
  int64_t by_index = 0;  // rank by (score descending, index ascending), spelled out
  std::vector<int64_t> order(d.at("scores").size(0));
  for (auto& i : order) i = by_index++;
  const auto s = d.at("scores").accessor<float, 1>();
  std::sort(order.begin(), order.end(),
            [&](int64_t a, int64_t b) { return s[a] != s[b] ? s[a] > s[b] : a < b; });
  EXPECT_TRUE(torch::equal(keep, reference_nms(d.at("boxes"), torch::tensor(order), 0.5)));
}

TEST(Nms, IouExactlyAtThresholdIsKept) {
  const auto d = load("nms_at_threshold");
  const auto keep = nms(d.at("boxes"), d.at("scores"), 0.5);
  EXPECT_TRUE(torch::equal(keep, d.at("keep")));
  // Pairs (0, 1) and (2, 3) overlap with IoU exactly 0.5: both members stay; (4, 5) is just
  // above and loses 5; (6, 7) are identical with equal scores: only one stays.
  const auto kept = std::get<0>(keep.sort());
  EXPECT_EQ(kept.size(0), 6);
  EXPECT_TRUE(torch::equal(kept.narrow(0, 0, 5), torch::tensor({0, 1, 2, 3, 4}, torch::kLong)));
}

TEST(Nms, DoubleAndEmptyInputs) {
  const auto d = load("nms_random_5");
  EXPECT_TRUE(torch::equal(
      nms(d.at("boxes").to(torch::kDouble), d.at("scores").to(torch::kDouble), 0.5),
      reference_nms(d.at("boxes").to(torch::kDouble),
                    std::get<1>(d.at("scores").to(torch::kDouble).sort(true, 0, true)), 0.5)));
  EXPECT_EQ(nms(torch::zeros({0, 4}), torch::zeros({0}), 0.5).size(0), 0);
  EXPECT_EQ(
      batched_nms(torch::zeros({0, 4}), torch::zeros({0}), torch::zeros({0}, torch::kLong), 0.5)
          .size(0),
      0);
}

TEST(BatchedNms, MatchesTorchvisionOnBothSidesOfItsSizeSwitch) {
  for (const char* name : {"batched_nms_small", "batched_nms_large"}) {
    const auto d = load(name);
    const auto keep = batched_nms(d.at("boxes"), d.at("scores"), d.at("groups"), 0.5);
    EXPECT_TRUE(torch::equal(keep, d.at("keep"))) << name;
  }
}

// Asking for the first k stops early and must give torchvision's result cut at k, including
// the order among equal scores where the coordinate trick applies (ties in batched_nms_small).
TEST(BatchedNms, FirstKEqualTorchvisionCutAtK) {
  for (const char* name : {"batched_nms_untied_small", "batched_nms_untied_large", "batched_nms_small"}) {
    const auto d = load(name);
    const auto& expected = d.at("keep");
    const double threshold = d.at("threshold").item<double>();
    for (const int64_t k : {int64_t{0}, int64_t{1}, int64_t{37}, expected.size(0) - 1, expected.size(0) + 5}) {
      const auto keep = batched_nms(d.at("boxes"), d.at("scores"), d.at("groups"), threshold, k);
      EXPECT_TRUE(torch::equal(keep, expected.narrow(0, 0, std::min(k, expected.size(0))))) << name << " k=" << k;
    }
  }
}

// Groups never suppress each other: the kept set is the union of per-group NMS.
TEST(BatchedNms, EqualsPerGroupNms) {
  const auto d = load("batched_nms_small");
  const auto& boxes = d.at("boxes");
  const auto& scores = d.at("scores");
  const auto& groups = d.at("groups");
  std::vector<int64_t> expected;
  for (int64_t g = 0; g < 7; ++g) {
    const auto members = torch::where(groups == g)[0];
    const auto kept = members.index_select(
        0, nms(boxes.index_select(0, members), scores.index_select(0, members), 0.5));
    for (int64_t i = 0; i < kept.size(0); ++i) expected.push_back(kept[i].item<int64_t>());
  }
  std::sort(expected.begin(), expected.end());
  const auto ours = std::get<0>(batched_nms(boxes, scores, groups, 0.5).sort());
  EXPECT_TRUE(torch::equal(ours, torch::tensor(expected, torch::kLong)));
}

TEST(Nms, RejectsBadArguments) {
  try {
    nms(torch::zeros({3, 5}), torch::zeros({3}), 0.5);
    ADD_FAILURE() << "no error";
  } catch (const c10::Error& e) {
    EXPECT_THAT(e.what_without_backtrace(), HasSubstr("[3, 5]"));
  }
  try {
    batched_nms(torch::zeros({3, 4}), torch::zeros({3}), torch::zeros({2}, torch::kLong), 0.5);
    ADD_FAILURE() << "no error";
  } catch (const c10::Error& e) {
    EXPECT_THAT(e.what_without_backtrace(), HasSubstr("groups must be [K] with K = 3, got [2]"));
  }
}

}  // namespace
}  // namespace instseg::ops
