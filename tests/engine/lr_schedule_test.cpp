// learning_rate against torch.optim.lr_scheduler (tests/reference/engine_optim.py): torchvision's
// reference warm-up (LinearLR) chained with MultiStepLR or CosineAnnealingLR(T_max=iterations).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "instseg/engine/lr_schedule.h"
#include "support/reference.h"

namespace instseg {
namespace {

void run_case(const std::string& name, const std::string& schedule) {
  SCOPED_TRACE(name);
  const auto ref = testing::load_tensors(testing::reference_dir("engine_optim") + "/lr_" + name + ".pt");
  const auto config = ref.at("config");
  OptimConfig optim;
  optim.lr = config[0].item<double>();
  optim.iterations = static_cast<int>(config[1].item<double>());
  optim.warmup_iterations = static_cast<int>(config[2].item<double>());
  optim.warmup_factor = config[3].item<double>();
  optim.gamma = config[4].item<double>();
  optim.schedule = schedule;
  optim.steps.clear();
  const auto steps = ref.at("steps");
  for (int64_t i = 0; i < steps.numel(); ++i) optim.steps.push_back(static_cast<int>(steps[i].item<int64_t>()));
  const auto lrs = ref.at("lrs");
  ASSERT_EQ(lrs.numel(), optim.iterations);
  for (int i = 0; i < optim.iterations; ++i) {
    const double expected = lrs[i].item<double>();
    EXPECT_NEAR(learning_rate(optim, i), expected, 1e-7 * std::abs(expected) + 1e-15) << "iteration " << i;
  }
}

TEST(LearningRate, WarmupThenStepsMatchesLinearLrAndMultiStepLr) { run_case("step", "step"); }
TEST(LearningRate, MilestoneInsideWarmupMatchesChainedSchedulers) { run_case("step_in_warmup", "step"); }
TEST(LearningRate, NoWarmupMatchesMultiStepLr) { run_case("step_no_warmup", "step"); }
TEST(LearningRate, WarmupThenCosineMatchesLinearLrAndCosineAnnealingLr) { run_case("cosine", "cosine"); }
TEST(LearningRate, CosineWithLongWarmupMatchesChainedSchedulers) { run_case("cosine_long_warmup", "cosine"); }

TEST(LearningRate, KnownValues) {
  OptimConfig optim;
  optim.lr = 0.02;
  optim.warmup_iterations = 100;
  optim.warmup_factor = 0.001;
  optim.steps = {1000};
  EXPECT_DOUBLE_EQ(learning_rate(optim, 0), 0.02 * 0.001);
  EXPECT_DOUBLE_EQ(learning_rate(optim, 50), 0.02 * (0.001 + 0.999 * 0.5));
  EXPECT_DOUBLE_EQ(learning_rate(optim, 100), 0.02);
  EXPECT_DOUBLE_EQ(learning_rate(optim, 999), 0.02);
  EXPECT_NEAR(learning_rate(optim, 1000), 0.002, 1e-15);
  optim.schedule = "cosine";
  optim.iterations = 400;
  EXPECT_NEAR(learning_rate(optim, 200), 0.01, 1e-15);  // half-way: half the rate
  EXPECT_NEAR(learning_rate(optim, 399), 0.02 * 0.5 * (1 + std::cos(M_PI * 399 / 400)), 1e-15);
}

}  // namespace
}  // namespace instseg
