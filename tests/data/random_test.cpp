#include "data/random.h"

#include <gtest/gtest.h>

namespace instseg::data {
namespace {

// The synthetic images draw noise for a shape's pixels only: looking ahead and skipping must give
// the numbers, and leave the stream, exactly as walking every draw would.
TEST(Rng, LookingAheadAndSkippingMatchTheFullWalk) {
  Rng walked({7, 3}), jumped({7, 3});
  std::vector<double> draws;
  for (int i = 0; i < 1000; ++i) draws.push_back(walked.uniform());
  for (uint64_t k : {0u, 1u, 2u, 499u, 999u}) {
    EXPECT_EQ(jumped.uniform_ahead(k), draws[k]) << k;
    EXPECT_EQ(jumped.uniform_ahead(k, -0.5, 2.0), -0.5 + 2.5 * draws[k]) << k;
  }
  jumped.skip(1000);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(jumped.uniform(), walked.uniform()) << i;
  EXPECT_NE(Rng({7, 3}).uniform(), Rng({7, 4}).uniform());
}

}  // namespace
}  // namespace instseg::data
