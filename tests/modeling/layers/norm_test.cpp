// Shared norm layers (modeling/layers/norm.h): frozen batch norm and the NormKind vocabulary.
#include "instseg/modeling/layers/norm.h"
#include "instseg/ops/mixed_precision.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "instseg/errors.h"

namespace instseg {
namespace {

// Frozen batch norm is the eval-mode batch norm with the same statistics, eps 1e-5.
TEST(FrozenBatchNorm2d, EqualsEvalBatchNorm) {
  torch::manual_seed(0);
  FrozenBatchNorm2d frozen(5);
  torch::nn::BatchNorm2d bn(5);
  torch::NoGradGuard no_grad;
  for (auto* t : {&frozen->weight, &frozen->bias, &frozen->running_mean}) t->copy_(torch::randn({5}));
  frozen->running_var.copy_(torch::rand({5}) + 0.1);
  bn->weight.copy_(frozen->weight);
  bn->bias.copy_(frozen->bias);
  bn->running_mean.copy_(frozen->running_mean);
  bn->running_var.copy_(frozen->running_var);
  bn->eval();
  const auto x = torch::randn({2, 5, 3, 4});
  EXPECT_TRUE(torch::allclose(frozen(x), bn(x), 1e-5, 1e-6));
  EXPECT_TRUE(frozen->parameters().empty());
}

// Every kind's config name reads back as that kind; the names are the config's documented ones.
// Under bf16 autocast a convolution hands the norm bf16 activations (the from-scratch recipes:
// group norm with optim.precision bf16). The layer then normalises in float: forward and backward
// run, and equal float32 group norm of the same (bf16-rounded) input.
TEST(GroupNorm, AcceptsBf16ActivationsUnderAutocast) {
  torch::manual_seed(0);
  auto norm = make_norm(NormKind::kGroupNorm, 64);
  auto& gn = *norm.get<GroupNorm>();
  {
    torch::NoGradGuard no_grad;
    gn.weight.uniform_(0.5, 1.5);
    gn.bias.uniform_(-0.5, 0.5);
  }
  const auto x = torch::randn({2, 64, 6, 5}).to(torch::kBFloat16).requires_grad_();
  torch::Tensor y;
  {
    ops::Bf16AutocastScope autocast(true);
    y = norm.forward(x);
  }
  const auto expected = torch::group_norm(x.detach().to(torch::kFloat), 32, gn.weight.detach(), gn.bias.detach());
  EXPECT_TRUE(torch::allclose(y.detach().to(torch::kFloat), expected, 1e-5, 1e-5));
  y.sum().backward();
  ASSERT_TRUE(x.grad().defined());
  EXPECT_EQ(x.grad().scalar_type(), torch::kBFloat16);
  EXPECT_TRUE(gn.weight.grad().defined());
  // float input: torch's own layer, unchanged.
  const auto f = torch::randn({2, 64, 6, 5});
  EXPECT_TRUE(torch::equal(norm.forward(f), torch::group_norm(f, 32, gn.weight, gn.bias)));
}

TEST(NormKind, NamesRoundTrip) {
  const std::vector<std::pair<NormKind, std::string>> expected{
      {NormKind::kFrozenBatchNorm, "frozen_batch_norm"},
      {NormKind::kBatchNorm, "batch_norm"},
      {NormKind::kGroupNorm, "group_norm"},
      {NormKind::kNone, "none"}};
  for (const auto& [kind, name] : expected) {
    EXPECT_EQ(to_string(kind), name);
    EXPECT_EQ(norm_kind_named(name, "model.backbone.norm"), kind) << name;
  }
}

// An unknown name (here the old config's "frozen") is an error naming the key and the choices.
TEST(NormKind, UnknownNameNamesKeyAndChoices) {
  EXPECT_THAT([] { norm_kind_named("frozen", "model.backbone.norm"); },
              ::testing::ThrowsMessage<ConfigError>(::testing::StrEq(
                  "model.backbone.norm must be one of frozen_batch_norm | batch_norm | group_norm | "
                  "none, got \"frozen\"")));
  EXPECT_THROW(norm_kind_named("", "k"), ConfigError);
  EXPECT_THROW(norm_kind_named("Batch_Norm", "k"), ConfigError);  // names are case-sensitive
}

}  // namespace
}  // namespace instseg
