#pragma once
#include <torch/nn/module.h>
#include <torch/nn/modules/container/any.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include <array>
#include <string>
#include <vector>

#include "instseg/modeling/layers/conv_norm_act.h"
#include "instseg/modeling/layers/norm.h"
#include "instseg/ops/linear.h"

namespace instseg {

// The box head's architecture. Config names in brackets.
enum class BoxHeadKind {
  kTwoMlp,  // [two_mlp] v1: flatten, fc6 + ReLU, fc7 + ReLU (torchvision's TwoMLPHead)
  kConvFc,  // [conv_fc] v2: four conv3x3 + norm + ReLU, flatten, one fc + ReLU (FastRCNNConvFCHead)
};

// The config name of a kind: "two_mlp", "conv_fc".
std::string to_string(BoxHeadKind kind);
// The kind of a config name; throws ConfigError naming `key` (e.g. "model.roi_heads.box_head") and
// the accepted names when `name` is none of them.
BoxHeadKind box_head_kind_named(const std::string& name, const std::string& key);

// torchvision's TwoMLPHead. Children fc6, fc7.
class TwoMlpHeadImpl : public torch::nn::Module {
 public:
  TwoMlpHeadImpl(int64_t in_features, int64_t representation_size);
  // x: [R, C, S, S] -> [R, representation_size]
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::Linear fc6{nullptr}, fc7{nullptr};
  ops::LinearKernel linear_kernel = ops::LinearKernel::kLibTorch;  // RoiHeads::set_linear_kernel
};
TORCH_MODULE(TwoMlpHead);

// torchvision's FastRCNNConvFCHead. Children "0".."n-1" (each "0" conv3x3, "1" norm, "2" ReLU;
// the conv has a bias only without norm), "n" flatten, then "n+1", "n+3", ... Linear + ReLU, so
// state dict keys read box_head.0.0.weight, box_head.5.weight as torchvision's.
class ConvFcHeadImpl : public torch::nn::Module {
 public:
  // input: (C, S, S) of the pooled features
  ConvFcHeadImpl(std::array<int64_t, 3> input, const std::vector<int64_t>& conv_channels,
                 const std::vector<int64_t>& fc_features, NormKind norm);
  // x: [R, C, S, S] -> [R, fc_features.back()]
  torch::Tensor forward(const torch::Tensor& x);

  ops::LinearKernel linear_kernel = ops::LinearKernel::kLibTorch;  // RoiHeads::set_linear_kernel

 private:
  std::vector<ConvNormAct> convs_;
  std::vector<torch::nn::Linear> fcs_;
};
TORCH_MODULE(ConvFcHead);

// The box head of a kind for in_channels x pooled_size^2 features, giving representation_size
// features: TwoMLPHead, or ConvFc (4 convs as wide as the input, 1 fc). torchvision: 256, 7, 1024.
torch::nn::AnyModule make_box_head(BoxHeadKind kind, NormKind norm, int64_t in_channels,
                                   int64_t pooled_size, int64_t representation_size);

}  // namespace instseg
