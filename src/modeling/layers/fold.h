#pragma once
// Folding a convolution's norm layer into its weights, for predict's fused path
// (MaskRcnn::prepare_inference): eval-mode batch norm is a per-channel scale and shift, so
//   norm(conv(x)) = conv'(x) with weight' = weight * scale[o], bias' = (bias - mean) * scale + beta.
#include <torch/nn/module.h>
#include <torch/nn/modules/conv.h>

#include "instseg/modeling/layers/conv_norm_act.h"
#include "instseg/ops/fused_conv.h"

namespace instseg::detail {

// True for no norm (null), frozen batch norm and batch norm (its running statistics); false for
// group norm, whose statistics depend on the input.
bool foldable(const torch::nn::Module* norm);

// The convolution with `norm` folded in (null: none; must be foldable), with its own stride,
// padding and dilation.
ops::FusedConv2d fuse_conv(const torch::nn::Conv2dImpl& conv, const torch::nn::Module* norm, bool relu,
                           ops::InferencePrecision precision, bool float_output);

// A ConvNormAct block ("0" convolution, "1" norm unless none, then maybe a ReLU); undefined when
// its norm is not foldable.
ops::FusedConv2d fuse_block(const ConvNormActImpl& block, ops::InferencePrecision precision, bool float_output);

}  // namespace instseg::detail
