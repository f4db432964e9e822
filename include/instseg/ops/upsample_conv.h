#pragma once
#include <torch/types.h>

namespace instseg::ops {

// A transposed convolution with a 2x2 kernel and stride 2 (torchvision's mask predictor
// conv5_mask): x [N, C, H, W], weight [C, O, 2, 2] (ConvTranspose2d's layout), bias [O] or
// undefined -> [N, O, 2H, 2W]. Equal to torch::conv_transpose2d(x, weight, bias, 2).
//
// Each input pixel writes its own 2x2 output block, so the whole op is a 1x1 convolution to O*4
// channels and a pixel shuffle, and so are its gradients. LibTorch's CPU kernel for it
// (slow_conv_transpose2d, no oneDNN path) takes several times longer backward, so that kernel is
// used only when no gradient is needed (inference), where it is the faster of the two.
torch::Tensor upsample_conv2x2(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias);

}  // namespace instseg::ops
