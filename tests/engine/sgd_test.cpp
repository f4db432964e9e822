// Sgd against torch.optim.SGD (tests/reference/engine_optim.py): 3 steps with changing learning
// rates, a parameter without a gradient in one step, weight decay, momentum and gradient clipping.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <limits>
#include <string>

#include "instseg/engine/sgd.h"
#include "support/reference.h"

namespace instseg {
namespace {

// A module whose parameters are the reference's p0, p1, p2 (float64) plus a frozen one that
// SGD must leave alone.
struct Params : torch::nn::Module {
  explicit Params(const std::map<std::string, torch::Tensor>& ref) {
    for (int i = 0; i < 3; ++i) register_parameter("p" + std::to_string(i), ref.at("p" + std::to_string(i)).clone());
    frozen = register_parameter("frozen", torch::ones({2}, torch::kFloat64), /*requires_grad=*/false);
  }
  torch::Tensor frozen;
};

void expect_close(const torch::Tensor& actual, const torch::Tensor& expected, const std::string& what) {
  ASSERT_EQ(actual.sizes(), expected.sizes()) << what;
  const double err = (actual - expected).abs().max().item<double>();
  const double scale = expected.abs().max().item<double>();
  EXPECT_LE(err, 1e-7 * scale + 1e-12) << what << ": max abs difference " << err;
}

void run_case(const std::string& name) {
  SCOPED_TRACE(name);
  const auto ref = testing::load_tensors(testing::reference_dir("engine_optim") + "/sgd_" + name + ".pt");
  const auto hyper = ref.at("hyper");
  const double momentum = hyper[0].item<double>(), weight_decay = hyper[1].item<double>(), clip = hyper[2].item<double>();
  Params module(ref);
  Sgd sgd(module, momentum, weight_decay);
  const auto params = module.named_parameters();
  for (int step = 0; step < 3; ++step) {
    sgd.zero_grad();
    for (int i = 0; i < 3; ++i) {
      const auto key = "g" + std::to_string(step) + "_" + std::to_string(i);
      if (ref.count(key)) params["p" + std::to_string(i)].mutable_grad() = ref.at(key).clone();
    }
    module.frozen.mutable_grad() = torch::ones({2}, torch::kFloat64);  // must be ignored: not trainable
    if (clip > 0) {
      const double norm = sgd.clip_grad_norm(clip);
      EXPECT_NEAR(norm, ref.at("norms")[step].item<double>(), 1e-9 * norm) << "step " << step;
    }
    sgd.step(ref.at("lrs")[step].item<double>());
  }
  for (int i = 0; i < 3; ++i) {
    const std::string p = "p" + std::to_string(i);
    expect_close(params[p], ref.at("after" + std::to_string(i)), p);
    const auto& buffers = sgd.momentum_buffers();
    if (ref.count("m" + std::to_string(i))) {
      ASSERT_TRUE(buffers.count(p)) << p << " has no momentum buffer";
      expect_close(buffers.at(p), ref.at("m" + std::to_string(i)), p + " momentum buffer");
    } else {
      EXPECT_FALSE(buffers.count(p)) << p << ": torch keeps no momentum buffer here";
    }
  }
  EXPECT_TRUE(torch::equal(module.frozen, torch::ones({2}, torch::kFloat64))) << "a frozen parameter was updated";
  EXPECT_FALSE(sgd.momentum_buffers().count("frozen"));
}

TEST(Sgd, MomentumAndWeightDecayMatchTorchOptimSgd) { run_case("momentum_decay"); }
TEST(Sgd, PlainMatchesTorchOptimSgd) { run_case("plain"); }
TEST(Sgd, WeightDecayWithoutMomentumMatchesTorchOptimSgd) { run_case("decay_only"); }
TEST(Sgd, ClippedGradientsMatchClipGradNorm) { run_case("clipped"); }

TEST(Sgd, NamesTheFirstParameterWithANonFiniteGradient) {
  torch::nn::Module module;
  auto a = module.register_parameter("a", torch::ones({3}));
  auto b = module.register_parameter("b", torch::ones({2}));
  Sgd sgd(module, 0.9, 0.0);
  (a.sum() + b.sum()).backward();
  EXPECT_EQ(sgd.first_non_finite_gradient(), "");
  b.mutable_grad()[1] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(sgd.first_non_finite_gradient(), "b");
  a.mutable_grad()[0] = std::numeric_limits<float>::infinity();
  EXPECT_EQ(sgd.first_non_finite_gradient(), "a");
}

TEST(Sgd, RestoredMomentumBuffersContinueExactly) {
  // Two steps straight vs one step, buffers copied into a fresh optimizer, one more step.
  auto make = [] {
    auto m = std::make_shared<torch::nn::LinearImpl>(3, 2);
    torch::NoGradGuard no_grad;
    m->weight.copy_(torch::arange(6, torch::kFloat).reshape({2, 3}) / 10);
    m->bias.fill_(0.5);
    return m;
  };
  const auto grad_w = torch::tensor({{0.3f, -1.0f, 2.0f}, {0.5f, 0.25f, -0.75f}});
  const auto grad_b = torch::tensor({1.0f, -2.0f});
  auto set_grads = [&](torch::nn::LinearImpl& m, float k) {
    m.weight.mutable_grad() = grad_w * k;
    m.bias.mutable_grad() = grad_b * k;
  };
  auto straight = make();
  Sgd a(*straight, 0.9, 1e-4);
  set_grads(*straight, 1.0f);
  a.step(0.1);
  set_grads(*straight, -0.5f);
  a.step(0.1);

  auto first = make();
  Sgd b(*first, 0.9, 1e-4);
  set_grads(*first, 1.0f);
  b.step(0.1);
  Sgd c(*first, 0.9, 1e-4);
  std::map<std::string, torch::Tensor> copied;
  for (const auto& [k, v] : b.momentum_buffers()) copied[k] = v.clone();
  c.set_momentum_buffers(copied);
  set_grads(*first, -0.5f);
  c.step(0.1);
  EXPECT_TRUE(torch::equal(straight->weight, first->weight));
  EXPECT_TRUE(torch::equal(straight->bias, first->bias));
}

}  // namespace
}  // namespace instseg
