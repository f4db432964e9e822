// The progress bar's line: with a time budget (training with run.time_limit_minutes) its ETA and
// fill follow the budget, not an item count that is only an upper bound (the demo's 100,000).
#include <gtest/gtest.h>
#include <gmock/gmock.h>

#include <chrono>
#include <cstdio>

#include "instseg/common/progress_bar.h"

namespace instseg {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using std::chrono::seconds;

class ProgressBarLine : public ::testing::Test {
 protected:
  void SetUp() override { out_ = std::tmpfile(); ASSERT_NE(out_, nullptr); }
  void TearDown() override { std::fclose(out_); }
  std::FILE* out_ = nullptr;
};

// 10 of 100,000 iterations after 10 s: at 1 it/s the item count's ETA is 99,990 s (27:46:30).
TEST_F(ProgressBarLine, EtaIsTheItemCountsWithoutABudget) {
  const auto since = std::chrono::steady_clock::now();
  ProgressBar bar(100000, "train", "it", out_);
  bar.update(10);
  const std::string line = bar.line(since + seconds(10), "", false);
  EXPECT_THAT(line, HasSubstr("10/100000")) << line;
  EXPECT_THAT(line, HasSubstr("ETA 27:46:")) << line;
}

// The same run with a 5-minute budget: ETA 4:50, 0:10 of 5:00 used; half-way through the budget
// the bar is half full although 150 of 100,000 items are done.
TEST_F(ProgressBarLine, WithATimeBudgetEtaAndFillAreTheBudgets) {
  const auto since = std::chrono::steady_clock::now();
  ProgressBar bar(100000, "train", "it", out_);
  bar.set_time_budget(300.0, since);
  bar.update(10);
  const std::string early = bar.line(since + seconds(10), "loss 1.0", false);
  EXPECT_THAT(early, HasSubstr("ETA 4:50 (0:10 of 5:00)")) << early;
  EXPECT_THAT(early, Not(HasSubstr("27:46"))) << early;
  EXPECT_THAT(early, HasSubstr("loss 1.0")) << early;
  bar.update(150);
  const std::string half = bar.line(since + seconds(150), "", false);
  EXPECT_THAT(half, HasSubstr("[############............]")) << half;
  EXPECT_THAT(half, HasSubstr("ETA 2:30 (2:30 of 5:00)")) << half;
  // Past the budget (the final validation's share): no negative ETA.
  EXPECT_THAT(bar.line(since + seconds(320), "", false), HasSubstr("ETA 0:00 (5:20 of 5:00)"));
}

}  // namespace
}  // namespace instseg
