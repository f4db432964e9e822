// ops::FusedConv2d against LibTorch's conv2d: the direct kernels and, for 3x3 stride-1
// convolutions, oneDNN's Winograd kernels (the default where the CPU has them).
#include "instseg/ops/fused_conv.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "instseg/ops/conv2d.h"
#include "layer_gradients.h"

namespace instseg::ops {
namespace {

using testing::relative;

// A map whose sides are not multiples of Winograd's 4-pixel tiles, with bias and ReLU.
TEST(FusedConv2d, WinogradAndDirectKernelsEqualLibTorchsConv) {
  torch::manual_seed(9);
  const auto x = torch::randn({1, 32, 21, 30}).contiguous(at::MemoryFormat::ChannelsLast);
  const auto w = torch::randn({48, 32, 3, 3}) * 0.1, b = torch::randn({48});
  const auto reference = torch::conv2d(x, w, b, 1, 1).relu();
  FusedConvOptions options;
  options.padding = 1;
  options.relu = true;
  const auto winograd = FusedConv2d(w, b, options).forward(x);
  options.winograd = false;
  const auto direct = FusedConv2d(w, b, options).forward(x);
  EXPECT_TRUE(winograd.is_contiguous(at::MemoryFormat::ChannelsLast));
  EXPECT_LT(relative(direct, reference), 1e-5);
  EXPECT_LT(relative(winograd, reference), 1e-5);
  if (conv2d_uses_winograd(x, w, 1, 1, 1, 1)) {
    EXPECT_FALSE(torch::equal(winograd, direct)) << "the same bits: Winograd was not used";
  }
  // With a residual add (the bottlenecks' last convolution) the direct kernel serves.
  const auto addend = torch::randn({1, 48, 21, 30}).contiguous(at::MemoryFormat::ChannelsLast);
  options.winograd = true;
  const auto summed = FusedConv2d(w, b, options).forward_add(x, addend.clone());
  EXPECT_LT(relative(summed, (torch::conv2d(x, w, b, 1, 1) + addend).relu()), 1e-5);
}

}  // namespace
}  // namespace instseg::ops
