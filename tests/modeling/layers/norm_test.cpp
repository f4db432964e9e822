// Shared norm layers (modeling/layers/norm.h): frozen batch norm and the NormKind vocabulary.
#include "instseg/modeling/layers/norm.h"

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
