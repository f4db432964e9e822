#include "instseg/modeling/sampler.h"

#include <ATen/CPUGeneratorImpl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>

#include "support/reference.h"

namespace instseg {
namespace {

std::map<std::string, torch::Tensor> load(const std::string& name) {
  return testing::load_tensors(testing::reference_dir("ops_training") + "/" + name + ".pt");
}

std::vector<torch::Tensor> labels_of(const std::map<std::string, torch::Tensor>& d) {
  return {d.at("labels0"), d.at("labels1"), d.at("labels2")};
}

// Same seed, same draws: torchvision seeds the global generator, we pass our own.
TEST(Sampler, SameSeedGivesTorchvisionsSubsets) {
  for (const char* name : {"sampler_b256", "sampler_b512"}) {
    const auto d = load(name);
    const auto p = d.at("params");
    const BalancedPositiveNegativeSampler sampler(p[0].item<int64_t>(), p[1].item<double>());
    auto gen = at::make_generator<at::CPUGeneratorImpl>(p[2].item<int64_t>());
    const auto [pos, neg] = sampler(labels_of(d), gen);
    ASSERT_EQ(pos.size(), 3u);
    for (size_t i = 0; i < 3; ++i) {
      EXPECT_EQ(pos[i].scalar_type(), torch::kUInt8);
      EXPECT_TRUE(torch::equal(pos[i], d.at("pos" + std::to_string(i)))) << name << " image " << i;
      EXPECT_TRUE(torch::equal(neg[i], d.at("neg" + std::to_string(i)))) << name << " image " << i;
    }
  }
}

// Counts and membership, whatever the seed: quota of positives, negatives fill the rest, only
// from the right labels, never both.
TEST(Sampler, CountsAndMembership) {
  const auto labels = labels_of(load("sampler_b256"));
  const BalancedPositiveNegativeSampler sampler(256, 0.5);
  for (uint64_t seed : {1, 2, 3}) {
    const auto [pos, neg] = sampler(labels, at::make_generator<at::CPUGeneratorImpl>(seed));
    for (size_t i = 0; i < labels.size(); ++i) {
      const int64_t available_pos = (labels[i] >= 1).sum().item<int64_t>();
      const int64_t available_neg = (labels[i] == 0).sum().item<int64_t>();
      const int64_t num_pos = pos[i].sum().item<int64_t>(), num_neg = neg[i].sum().item<int64_t>();
      EXPECT_EQ(num_pos, std::min<int64_t>(available_pos, 128));
      EXPECT_EQ(num_neg, std::min<int64_t>(available_neg, 256 - num_pos));
      EXPECT_TRUE((labels[i].masked_select(pos[i].to(torch::kBool)) >= 1).all().item<bool>());
      EXPECT_TRUE((labels[i].masked_select(neg[i].to(torch::kBool)) == 0).all().item<bool>());
    }
  }
  // Image 1 has few positives (~2%): negatives make up the batch.
  const auto [pos, neg] = sampler(labels, at::make_generator<at::CPUGeneratorImpl>(9));
  EXPECT_LT(pos[1].sum().item<int64_t>(), 128);
  EXPECT_EQ(pos[1].sum().item<int64_t>() + neg[1].sum().item<int64_t>(), 256);
}

TEST(Sampler, DifferentSeedsDrawDifferentSubsets) {
  const auto labels = labels_of(load("sampler_b256"));
  const BalancedPositiveNegativeSampler sampler(256, 0.5);
  const auto a = sampler(labels, at::make_generator<at::CPUGeneratorImpl>(1)).first[0];
  const auto b = sampler(labels, at::make_generator<at::CPUGeneratorImpl>(2)).first[0];
  EXPECT_FALSE(torch::equal(a, b));
}

TEST(Sampler, RejectsBadOptions) {
  EXPECT_THROW(BalancedPositiveNegativeSampler(0, 0.5), c10::Error);
  try {
    BalancedPositiveNegativeSampler(256, 1.5);
    ADD_FAILURE() << "no error";
  } catch (const c10::Error& e) {
    EXPECT_THAT(e.what_without_backtrace(), ::testing::HasSubstr("got 1.5"));
  }
}

}  // namespace
}  // namespace instseg
