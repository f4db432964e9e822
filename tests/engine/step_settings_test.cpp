#include "instseg/engine/step_settings.h"

#include <ATen/CPUGeneratorImpl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "instseg/data/loader.h"
#include "instseg/engine/model_factory.h"
#include "instseg/engine/train_config.h"
#include "instseg/engine/training_data.h"
#include "instseg/errors.h"
#include "tiny_training.h"

namespace instseg {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::ThrowsMessage;

std::vector<std::string> names(const std::vector<StepSettings>& settings) {
  std::vector<std::string> out;
  for (const auto& s : settings) out.push_back(s.name());
  return out;
}

TEST(StepSettings, CandidatesAreWhatTheConfigLeavesOpen) {
  OptimConfig optim;  // fp32, contiguous: nothing to time
  EXPECT_THAT(names(step_candidates(optim, true)), ElementsAre("fp32 contiguous"));
  optim.precision = "auto";
  EXPECT_THAT(names(step_candidates(optim, true)), ElementsAre("fp32 contiguous", "bf16 contiguous"));
  // Emulated bf16 is slower than fp32 everywhere: not worth timing.
  EXPECT_THAT(names(step_candidates(optim, false)), ElementsAre("fp32 contiguous"));
  optim.memory_format = "auto";
  EXPECT_THAT(names(step_candidates(optim, true)),
              ElementsAre("fp32 contiguous", "fp32 channels_last", "bf16 contiguous", "bf16 channels_last"));
  // Asked for by name, bf16 is given even where the CPU emulates it.
  optim.precision = "bf16";
  optim.memory_format = "channels_last";
  EXPECT_THAT(names(step_candidates(optim, false)), ElementsAre("bf16 channels_last"));
}

TEST(StepSettings, TheFastestWinsTiesGoToTheEarlierAndASingleCandidateIsNotTimed) {
  OptimConfig optim;
  optim.precision = optim.memory_format = "auto";
  const auto candidates = step_candidates(optim, true);
  std::vector<double> times = {0.5, 0.4, 0.3, 0.35};
  size_t calls = 0;
  auto timed = [&](const StepSettings&) { return times[calls++]; };
  StepChoice choice = choose_fastest(candidates, timed);
  EXPECT_EQ(choice.chosen.name(), "bf16 contiguous");
  ASSERT_EQ(choice.trials.size(), 4u);
  EXPECT_EQ(choice.trials[1].settings.name(), "fp32 channels_last");
  EXPECT_DOUBLE_EQ(choice.trials[1].seconds, 0.4);
  EXPECT_THAT(choice.summary(), AllOf(HasSubstr("step settings: bf16 contiguous"), HasSubstr("fp32 channels_last 0.400 s"),
                                      HasSubstr("bf16 channels_last 0.350 s")));

  times = {0.3, 0.2, 0.2, 0.25};
  calls = 0;
  EXPECT_EQ(choose_fastest(candidates, timed).chosen.name(), "fp32 channels_last");

  calls = 0;
  choice = choose_fastest({StepSettings{true, false}}, timed);
  EXPECT_EQ(calls, 0u);
  EXPECT_TRUE(choice.trials.empty());
  EXPECT_EQ(choice.summary(), "step settings: bf16 contiguous (as configured)");
}

TEST(StepSettings, NamesParseBackAndAnythingElseIsAConfigErrorNamingItsSource) {
  for (const bool bf16 : {false, true}) {
    for (const bool channels_last : {false, true}) {
      const StepSettings s{bf16, channels_last};
      EXPECT_EQ(StepSettings::parse(s.name(), "x"), s) << s.name();
    }
  }
  EXPECT_THAT([] { StepSettings::parse("fp16 contiguous", "run/train_state.pth"); },
              ThrowsMessage<ConfigError>(AllOf(HasSubstr("run/train_state.pth"), HasSubstr("'fp16 contiguous'"))));
  EXPECT_THAT([] { StepSettings::parse("", "state"); }, ThrowsMessage<ConfigError>(HasSubstr("state")));
}

// The engine tests' tiny model at 64 px and one batch of two of its images.
struct TinyStep {
  TinyStep() {
    config.data.synthetic_image_size = 64;
    config.data.synthetic_train_images = 4;
    config.data.synthetic_val_images = 0;
    config.model.options.transform.min_size = {64};
    config.model.options.transform.max_size = 64;
    torch::manual_seed(3);
    data.emplace(config.data);
    model = build_mask_rcnn_for_training(config.model, data->num_classes());
    data::LoaderOptions options;
    options.batch_size = 2;
    options.prefetch_batches = 0;
    batch = data::DataLoader(data->train_set(), options).next();
  }

  // Loss terms, and the gradient of their sum by parameter name, of one training pass.
  std::map<std::string, double> pass(std::map<std::string, torch::Tensor>& grads) {
    model->train();
    at::Generator generator = at::detail::createCPUGenerator(11);
    torch::Tensor total = torch::zeros({});
    std::map<std::string, double> out;
    for (const auto& [name, value] : model->losses(batch.images, batch.targets, generator)) {
      out[name] = value.item<double>();
      total = total + value;
    }
    total.backward();
    for (auto& p : model->named_parameters()) {
      if (p.value().grad().defined()) grads[p.key()] = p.value().grad().clone();
      p.value().mutable_grad() = torch::Tensor();
    }
    return out;
  }

  TrainConfig config = testing::tiny_train_config();
  std::optional<TrainingData> data;
  MaskRcnn model{nullptr};
  data::Batch batch;
};

// The layout (and with it oneDNN's inner products for the box head) changes the kernels, not the
// arithmetic: losses and gradients are the contiguous ones within float rounding, and not the
// same bits (which would mean the setting was ignored).
TEST(StepSettings, ChannelsLastLossesAndGradientsAreTheContiguousOnes) {
  torch::set_num_threads(2);
  TinyStep tiny;
  std::map<std::string, torch::Tensor> contiguous_grads, channels_last_grads;
  const auto contiguous = tiny.pass(contiguous_grads);
  apply_step_settings(*tiny.model, StepSettings{false, true});
  EXPECT_TRUE(tiny.model->channels_last_training());
  EXPECT_EQ(tiny.model->roi_heads()->box_predictor->linear_kernel, ops::LinearKernel::kOneDnn);
  EXPECT_TRUE(tiny.model->backbone()->body->fast_training());
  // The convolution weights follow the activations' layout (no per-step copy into it), and their
  // gradients arrive in it.
  for (const auto& p : tiny.model->named_parameters()) {
    if (p.value().dim() == 4) EXPECT_TRUE(p.value().is_contiguous(at::MemoryFormat::ChannelsLast)) << p.key();
  }
  const auto channels_last = tiny.pass(channels_last_grads);
  for (const auto& p : tiny.model->named_parameters()) {
    if (p.value().dim() == 4 && p.value().grad().defined()) {
      EXPECT_TRUE(p.value().grad().is_contiguous(at::MemoryFormat::ChannelsLast)) << p.key() << "'s gradient";
    }
  }
  ASSERT_EQ(contiguous.size(), 5u);
  for (const auto& [name, value] : contiguous) {
    EXPECT_NEAR(channels_last.at(name), value, 1e-5 * std::abs(value) + 1e-6) << name;
  }
  ASSERT_EQ(channels_last_grads.size(), contiguous_grads.size());
  double differs = 0.0;
  for (const auto& [name, g] : contiguous_grads) {
    const auto& h = channels_last_grads.at(name);
    const double scale = g.abs().max().item<double>() + 1e-12;
    const double diff = (h - g).abs().max().item<double>();
    EXPECT_LE(diff, 1e-3 * scale) << name;
    differs = std::max(differs, diff);
  }
  EXPECT_GT(differs, 0.0) << "channels-last gave the contiguous bits: the layout was not applied";
  apply_step_settings(*tiny.model, StepSettings{false, false});
  for (const auto& p : tiny.model->named_parameters()) EXPECT_TRUE(p.value().is_contiguous()) << p.key();
}

// Timing the candidates trains nothing: weights, batch norm statistics, gradients, the global RNG
// and the mode are as they were, and the model ends with the chosen layout.
TEST(StepSettings, MeasuringLeavesTheModelAsItFoundItAndAppliesTheChoice) {
  torch::set_num_threads(2);
  TinyStep tiny;
  std::map<std::string, torch::Tensor> grads;
  tiny.pass(grads);  // moves batch norm's statistics off their initial values
  // A gradient present before the measurement must be there after it.
  auto first = tiny.model->parameters().front();
  first.mutable_grad() = torch::full_like(first, 0.25);
  tiny.model->eval();
  std::vector<torch::Tensor> buffers, weights;
  for (const auto& b : tiny.model->buffers()) buffers.push_back(b.clone());
  for (const auto& p : tiny.model->parameters()) weights.push_back(p.detach().clone());
  const auto rng = at::detail::getDefaultCPUGenerator().get_state();

  OptimConfig optim;
  optim.memory_format = "auto";
  const StepChoice choice = measure_step_settings(*tiny.model, [&] { return tiny.batch; }, optim, nullptr, {0, 1});
  ASSERT_EQ(choice.trials.size(), 2u);
  const auto& faster = choice.trials[0].seconds <= choice.trials[1].seconds ? choice.trials[0] : choice.trials[1];
  EXPECT_EQ(choice.chosen, faster.settings);
  EXPECT_GT(faster.seconds, 0.0);
  EXPECT_EQ(tiny.model->channels_last_training(), choice.chosen.channels_last);

  EXPECT_FALSE(tiny.model->is_training());
  size_t i = 0;
  for (const auto& b : tiny.model->buffers()) EXPECT_TRUE(torch::equal(b, buffers[i++])) << "buffer " << i - 1;
  i = 0;
  for (const auto& p : tiny.model->parameters()) {
    EXPECT_TRUE(torch::equal(p, weights[i])) << "parameter " << i;
    if (i == 0) {
      ASSERT_TRUE(p.grad().defined());
      EXPECT_TRUE(torch::equal(p.grad(), torch::full_like(p, 0.25)));
    } else {
      EXPECT_FALSE(p.grad().defined()) << "parameter " << i << " kept a timed pass's gradient";
    }
    ++i;
  }
  const auto after = torch::rand({4});
  at::Generator global = at::detail::getDefaultCPUGenerator();
  global.set_state(rng);
  EXPECT_TRUE(torch::equal(after, torch::rand({4}))) << "the global RNG moved";
}

}  // namespace
}  // namespace instseg
