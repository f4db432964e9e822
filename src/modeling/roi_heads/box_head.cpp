#include "instseg/modeling/roi_heads/box_head.h"

#include <torch/torch.h>

#include "modeling/named_enum.h"

namespace instseg {

namespace nn = torch::nn;

namespace {

const detail::NameTable<BoxHeadKind, 2> kBoxHeadNames{
    {{"two_mlp", BoxHeadKind::kTwoMlp}, {"conv_fc", BoxHeadKind::kConvFc}}};

}  // namespace

std::string to_string(BoxHeadKind kind) { return detail::name_of(kBoxHeadNames, kind); }

BoxHeadKind box_head_kind_named(const std::string& name, const std::string& key) {
  return detail::value_named(kBoxHeadNames, name, key);
}

TwoMlpHeadImpl::TwoMlpHeadImpl(int64_t in_features, int64_t representation_size) {
  fc6 = register_module("fc6", nn::Linear(in_features, representation_size));
  fc7 = register_module("fc7", nn::Linear(representation_size, representation_size));
}

torch::Tensor TwoMlpHeadImpl::forward(const torch::Tensor& x) {
  const auto h = torch::relu(ops::linear(x.flatten(1), fc6->weight, fc6->bias, linear_kernel));
  return torch::relu(ops::linear(h, fc7->weight, fc7->bias, linear_kernel));
}

ConvFcHeadImpl::ConvFcHeadImpl(std::array<int64_t, 3> input,
                               const std::vector<int64_t>& conv_channels,
                               const std::vector<int64_t>& fc_features, NormKind norm) {
  // Children are numbered as torchvision's nn.Sequential: convs, flatten (no parameters), then
  // each Linear followed by its ReLU.
  int64_t child = 0;
  int64_t channels = input[0];
  for (const int64_t c : conv_channels) {
    // torchvision's heads: He init for ReLU over fan_out, zero bias.
    const auto options =
        ConvNormActOptions(channels, c, 3).norm(norm).init(ConvInit::kKaimingNormalFanOut);
    convs_.push_back(register_module(std::to_string(child++), ConvNormAct(options)));
    channels = c;
  }
  ++child;  // flatten
  int64_t features = channels * input[1] * input[2];
  for (const int64_t f : fc_features) {
    fcs_.push_back(register_module(std::to_string(child), nn::Linear(features, f)));
    child += 2;  // Linear, ReLU
    features = f;
  }
}

torch::Tensor ConvFcHeadImpl::forward(const torch::Tensor& x) {
  auto y = x;
  for (auto& conv : convs_) y = conv->forward(y);  // [R, C, S, S]
  y = y.flatten(1);
  for (auto& fc : fcs_) y = torch::relu(ops::linear(y, fc->weight, fc->bias, linear_kernel));
  return y;
}

torch::nn::AnyModule make_box_head(BoxHeadKind kind, NormKind norm, int64_t in_channels,
                                   int64_t pooled_size, int64_t representation_size) {
  if (kind == BoxHeadKind::kTwoMlp) {
    return nn::AnyModule(TwoMlpHead(in_channels * pooled_size * pooled_size, representation_size));
  }
  // torchvision's v2 convs are as wide as the FPN (256 there).
  return nn::AnyModule(ConvFcHead(std::array<int64_t, 3>{in_channels, pooled_size, pooled_size},
                                  std::vector<int64_t>(4, in_channels),
                                  std::vector<int64_t>{representation_size}, norm));
}

}  // namespace instseg
