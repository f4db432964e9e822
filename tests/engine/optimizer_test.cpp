// Optimizer against torch.optim.SGD and torch.optim.AdamW (tests/reference/engine_optim.py): 3 steps
// with changing learning rates, a parameter without a gradient in one step, weight decay, momentum,
// AdamW's betas and gradient clipping; the per-parameter state must equal torch's too.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <limits>
#include <string>

#include "instseg/engine/optimizer.h"
#include "support/reference.h"

namespace instseg {
namespace {

// A module whose parameters are the reference's p0, p1, p2 (float64) plus a frozen one that
// the optimizer must leave alone.
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

void run_case(const std::string& kind, const std::string& name) {
  SCOPED_TRACE(kind + "_" + name);
  const auto ref = testing::load_tensors(testing::reference_dir("engine_optim") + "/" + kind + "_" + name + ".pt");
  const auto hyper = ref.at("hyper");
  OptimizerOptions options;
  options.kind = kind == "adamw" ? OptimizerOptions::Kind::kAdamW : OptimizerOptions::Kind::kSgd;
  options.momentum = hyper[0].item<double>();
  options.weight_decay = hyper[1].item<double>();
  const double clip = hyper[2].item<double>();
  options.beta1 = hyper[3].item<double>();
  options.beta2 = hyper[4].item<double>();
  Params module(ref);
  Optimizer optimizer(module, options);
  const auto params = module.named_parameters();
  for (int step = 0; step < 3; ++step) {
    optimizer.zero_grad();
    for (int i = 0; i < 3; ++i) {
      const auto key = "g" + std::to_string(step) + "_" + std::to_string(i);
      if (ref.count(key)) params["p" + std::to_string(i)].mutable_grad() = ref.at(key).clone();
    }
    module.frozen.mutable_grad() = torch::ones({2}, torch::kFloat64);  // must be ignored: not trainable
    if (clip > 0) {
      const double norm = optimizer.clip_grad_norm(clip);
      EXPECT_NEAR(norm, ref.at("norms")[step].item<double>(), 1e-9 * norm) << "step " << step;
    }
    optimizer.step(ref.at("lrs")[step].item<double>());
  }
  const auto& state = optimizer.state();
  for (int i = 0; i < 3; ++i) {
    const std::string p = "p" + std::to_string(i);
    expect_close(params[p], ref.at("after" + std::to_string(i)), p);
    for (const std::string slot : {"momentum_buffer", "exp_avg", "exp_avg_sq", "step"}) {
      const auto expected = ref.find(slot + std::to_string(i));
      const bool kept = state.count(slot) && state.at(slot).count(p);
      if (expected == ref.end()) {
        EXPECT_FALSE(kept) << p << ": torch keeps no " << slot << " here";
        continue;
      }
      ASSERT_TRUE(kept) << p << " has no " << slot;
      expect_close(state.at(slot).at(p).to(torch::kFloat64), expected->second, p + " " + slot);
    }
  }
  EXPECT_TRUE(torch::equal(module.frozen, torch::ones({2}, torch::kFloat64))) << "a frozen parameter was updated";
  for (const auto& [slot, tensors] : state) EXPECT_FALSE(tensors.count("frozen")) << slot;
}

TEST(Optimizer, SgdMomentumAndWeightDecayMatchTorchOptimSgd) { run_case("sgd", "momentum_decay"); }
TEST(Optimizer, SgdPlainMatchesTorchOptimSgd) { run_case("sgd", "plain"); }
TEST(Optimizer, SgdWeightDecayWithoutMomentumMatchesTorchOptimSgd) { run_case("sgd", "decay_only"); }
TEST(Optimizer, SgdClippedGradientsMatchClipGradNorm) { run_case("sgd", "clipped"); }
TEST(Optimizer, AdamWMatchesTorchOptimAdamW) { run_case("adamw", "default"); }
TEST(Optimizer, AdamWOtherBetasWithoutDecayMatchTorchOptimAdamW) { run_case("adamw", "betas_no_decay"); }
TEST(Optimizer, AdamWClippedGradientsMatchTorchOptimAdamW) { run_case("adamw", "clipped"); }

// AdamW's one-pass loop serves any dense parameter: contiguous, or transposed like a channels-last
// convolution weight, with its gradient in its own layout or in another (copied into the
// parameter's). All give the same update.
TEST(Optimizer, AdamWUpdateIsTheSameInEveryLayout) {
  torch::manual_seed(5);
  const auto start = torch::randn({6, 5}, torch::kFloat64), grad = torch::randn({6, 5}, torch::kFloat64);
  torch::nn::Module contiguous_module, strided_module, mixed_module;
  auto contiguous = contiguous_module.register_parameter("p", start.clone());
  auto strided = strided_module.register_parameter("p", start.t().contiguous().t());  // same values, transposed strides
  auto mixed = mixed_module.register_parameter("p", start.t().contiguous().t());
  ASSERT_FALSE(strided.is_contiguous());
  ASSERT_TRUE(strided.is_non_overlapping_and_dense());
  OptimizerOptions options;
  options.kind = OptimizerOptions::Kind::kAdamW;
  options.weight_decay = 0.01;
  Optimizer a(contiguous_module, options), b(strided_module, options), c(mixed_module, options);
  for (int step = 0; step < 3; ++step) {
    contiguous.mutable_grad() = grad * (step + 1);
    strided.mutable_grad() = (grad * (step + 1)).t().contiguous().t();
    mixed.mutable_grad() = grad * (step + 1);  // contiguous, unlike its parameter
    a.step(0.1);
    b.step(0.1);
    c.step(0.1);
  }
  expect_close(strided, contiguous, "transposed parameter and gradient");
  expect_close(mixed, contiguous, "transposed parameter, contiguous gradient");
  EXPECT_EQ(b.state().at("exp_avg").at("p").strides(), strided.strides());
  EXPECT_FALSE(torch::equal(contiguous, start)) << "no update happened";
}

TEST(Optimizer, NamesTheFirstParameterWithANonFiniteGradient) {
  torch::nn::Module module;
  auto a = module.register_parameter("a", torch::ones({3}));
  auto b = module.register_parameter("b", torch::ones({2}));
  Optimizer optimizer(module, OptimizerOptions{});
  (a.sum() + b.sum()).backward();
  EXPECT_EQ(optimizer.first_non_finite_gradient(), "");
  b.mutable_grad()[1] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(optimizer.first_non_finite_gradient(), "b");
  a.mutable_grad()[0] = std::numeric_limits<float>::infinity();
  EXPECT_EQ(optimizer.first_non_finite_gradient(), "a");
}

// Two steps straight vs one step, state copied into a fresh optimizer, one more step.
void expect_restored_state_continues_exactly(const OptimizerOptions& options) {
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
  Optimizer a(*straight, options);
  set_grads(*straight, 1.0f);
  a.step(0.1);
  set_grads(*straight, -0.5f);
  a.step(0.1);

  auto first = make();
  Optimizer b(*first, options);
  set_grads(*first, 1.0f);
  b.step(0.1);
  Optimizer c(*first, options);
  Optimizer::State copied;
  for (const auto& [slot, tensors] : b.state()) {
    for (const auto& [name, tensor] : tensors) copied[slot][name] = tensor.clone();
  }
  c.set_state(copied);
  set_grads(*first, -0.5f);
  c.step(0.1);
  EXPECT_TRUE(torch::equal(straight->weight, first->weight));
  EXPECT_TRUE(torch::equal(straight->bias, first->bias));
}

TEST(Optimizer, RestoredSgdStateContinuesExactly) { expect_restored_state_continues_exactly(OptimizerOptions{}); }

TEST(Optimizer, RestoredAdamWStateContinuesExactly) {
  OptimizerOptions options;
  options.kind = OptimizerOptions::Kind::kAdamW;
  expect_restored_state_continues_exactly(options);
}

}  // namespace
}  // namespace instseg
