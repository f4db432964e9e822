#include "instseg/modeling/matcher.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "support/reference.h"

namespace instseg {
namespace {

using ::testing::HasSubstr;

TEST(Matcher, MatchesTorchvision) {
  for (const char* name : {"matcher_rpn", "matcher_head", "matcher_rpn_strict"}) {
    const auto d =
        testing::load_tensors(testing::reference_dir("ops_training") + "/" + name + ".pt");
    const auto p = d.at("params");
    const Matcher matcher(p[0].item<double>(), p[1].item<double>(), p[2].item<double>() != 0);
    const auto matches = matcher(d.at("quality"));
    EXPECT_EQ(matches.scalar_type(), torch::kLong);
    EXPECT_TRUE(torch::equal(matches, d.at("matches"))) << name;
  }
}

// 2 ground truths x 4 predictions, worked by hand.
TEST(Matcher, ThresholdsAndLowQualityRescue) {
  const auto quality = torch::tensor({{0.9f, 0.4f, 0.1f, 0.0f},      // gt 0
                                      {0.2f, 0.5f, 0.55f, 0.55f}});  // gt 1: best 0.55, tied
  const auto strict = Matcher(0.7, 0.3)(quality);
  EXPECT_TRUE(torch::equal(strict, torch::tensor({0, -2, -2, -2}, torch::kLong)));
  const auto rescued = Matcher(0.7, 0.3, /*allow_low_quality_matches=*/true)(quality);
  EXPECT_TRUE(torch::equal(rescued, torch::tensor({0, -2, 1, 1}, torch::kLong)));
  // IoU exactly at a threshold belongs to the upper side.
  const auto at = Matcher(0.55, 0.4)(quality);
  EXPECT_TRUE(torch::equal(at, torch::tensor({0, -2, 1, 1}, torch::kLong)));
  const auto below = Matcher(0.7, 0.6)(quality);
  EXPECT_TRUE(torch::equal(below, torch::tensor({0, -1, -1, -1}, torch::kLong)));
}

TEST(Matcher, RejectsEmptyInputsAndBadThresholds) {
  try {
    Matcher(0.7, 0.3)(torch::zeros({0, 5}));
    ADD_FAILURE() << "no error";
  } catch (const c10::Error& e) {
    EXPECT_THAT(e.what_without_backtrace(), HasSubstr("no ground-truth boxes"));
  }
  try {
    Matcher(0.7, 0.3)(torch::zeros({2, 0}));
    ADD_FAILURE() << "no error";
  } catch (const c10::Error& e) {
    EXPECT_THAT(e.what_without_backtrace(), HasSubstr("no proposal boxes"));
  }
  try {
    Matcher(0.3, 0.7);
    ADD_FAILURE() << "no error";
  } catch (const c10::Error& e) {
    EXPECT_THAT(e.what_without_backtrace(), HasSubstr("low_threshold 0.7"));
  }
}

}  // namespace
}  // namespace instseg
