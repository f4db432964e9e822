// Start-up choice of a training step's precision and memory layout (step_settings.h).
#include "instseg/engine/step_settings.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <chrono>
#include <stdexcept>
#include <limits>
#include <sstream>

#include "instseg/data/loader.h"
#include "instseg/distributed/communicator.h"
#include "instseg/engine/train_config.h"
#include "instseg/errors.h"
#include "instseg/modeling/mask_rcnn.h"
#include "instseg/ops/mixed_precision.h"

namespace instseg {

std::string StepSettings::name() const {
  return std::string(bf16 ? "bf16" : "fp32") + (channels_last ? " channels_last" : " contiguous");
}

StepSettings StepSettings::parse(const std::string& name, const std::string& where) {
  for (const bool bf16 : {false, true}) {
    for (const bool channels_last : {false, true}) {
      const StepSettings s{bf16, channels_last};
      if (s.name() == name) return s;
    }
  }
  throw ConfigError(where + ": step settings must be '<fp32|bf16> <contiguous|channels_last>', got '" + name + "'");
}

std::string StepChoice::summary() const {
  std::ostringstream out;
  out << "step settings: " << chosen.name();
  if (trials.empty()) return out.str() + " (as configured)";
  out << " (fastest forward+backward pass at start-up:";
  out.precision(3);
  for (size_t i = 0; i < trials.size(); ++i) {
    out << (i == 0 ? " " : ", ") << trials[i].settings.name() << " " << std::fixed << trials[i].seconds << " s";
  }
  return out.str() + ")";
}

std::vector<StepSettings> step_candidates(const OptimConfig& optim, bool native_bf16) {
  std::vector<bool> precisions;
  if (optim.precision == "auto") {
    precisions.push_back(false);
    if (native_bf16) precisions.push_back(true);
  } else {
    precisions.push_back(optim.precision == "bf16");
  }
  std::vector<bool> layouts;
  if (optim.memory_format == "auto") {
    layouts = {false, true};
  } else {
    layouts = {optim.memory_format == "channels_last"};
  }
  std::vector<StepSettings> out;
  for (const bool bf16 : precisions) {
    for (const bool channels_last : layouts) out.push_back({bf16, channels_last});
  }
  return out;
}

StepChoice choose_fastest(const std::vector<StepSettings>& candidates,
                          const std::function<double(const StepSettings&)>& seconds) {
  StepChoice choice;
  if (candidates.empty()) throw std::invalid_argument("choose_fastest: no candidates");
  choice.chosen = candidates.front();
  if (candidates.size() == 1) return choice;
  double best = std::numeric_limits<double>::infinity();
  for (const auto& candidate : candidates) {
    const double s = seconds(candidate);
    choice.trials.push_back({candidate, s});
    if (s < best) {
      best = s;
      choice.chosen = candidate;
    }
  }
  return choice;
}

void apply_step_settings(MaskRcnnImpl& model, const StepSettings& settings) {
  model.set_channels_last_training(settings.channels_last);
}

namespace {

// What a timed pass changes and the run must not see: batch norm's running statistics, the
// gradients, torch's global RNG and the mode (the layout is the choice's, applied afterwards).
class ModelSnapshot {
 public:
  explicit ModelSnapshot(MaskRcnnImpl& model)
      : model_(model),
        training_(model.is_training()),
        rng_(at::detail::getDefaultCPUGenerator().get_state()) {
    for (const auto& buffer : model.buffers()) buffers_.push_back(buffer.clone());
    for (const auto& p : model.parameters()) grads_.push_back(p.grad().defined() ? p.grad().clone() : at::Tensor());
  }
  ~ModelSnapshot() {
    torch::NoGradGuard no_grad;
    size_t i = 0;
    for (auto& buffer : model_.buffers()) buffer.copy_(buffers_[i++]);
    i = 0;
    for (auto& p : model_.parameters()) p.mutable_grad() = grads_[i++];
    model_.train(training_);
    at::Generator global = at::detail::getDefaultCPUGenerator();
    global.set_state(rng_);
  }
  ModelSnapshot(const ModelSnapshot&) = delete;
  ModelSnapshot& operator=(const ModelSnapshot&) = delete;

 private:
  MaskRcnnImpl& model_;
  bool training_;
  at::Tensor rng_;
  std::vector<at::Tensor> buffers_;
  std::vector<at::Tensor> grads_;
};

// Seconds of one forward+backward pass in `settings`.
double time_pass(MaskRcnnImpl& model, const data::Batch& batch, const StepSettings& settings) {
  using Clock = std::chrono::steady_clock;
  apply_step_settings(model, settings);
  const auto start = Clock::now();
  // The same draws for every candidate: each times the same proposals and samples.
  at::Generator generator = at::detail::createCPUGenerator(0x5e771);
  torch::Tensor total = torch::zeros({}, torch::kFloat);
  {
    ops::Bf16AutocastScope autocast(settings.bf16);
    for (const auto& [name, value] : model.losses(batch.images, batch.targets, generator)) total = total + value;
  }
  total.backward();
  for (auto& p : model.parameters()) p.mutable_grad() = at::Tensor();
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Each candidate's fastest timed pass. The candidates take turns, round after round, so that a
// burst of load from elsewhere on a shared machine slows one round of all of them rather than
// every pass of one.
std::vector<double> time_candidates(MaskRcnnImpl& model, const data::Batch& batch,
                                    const std::vector<StepSettings>& candidates, const StepMeasureOptions& options) {
  model.train();
  std::vector<double> best(candidates.size(), std::numeric_limits<double>::infinity());
  for (int round = 0; round < options.warmup + options.repeats; ++round) {
    for (size_t i = 0; i < candidates.size(); ++i) {
      const double seconds = time_pass(model, batch, candidates[i]);
      if (round >= options.warmup) best[i] = std::min(best[i], seconds);
    }
  }
  return best;
}

}  // namespace

StepChoice measure_step_settings(MaskRcnnImpl& model, const std::function<data::Batch()>& make_batch,
                                 const OptimConfig& optim,
                                 dist::Communicator* comm, StepMeasureOptions options) {
  const auto candidates = step_candidates(optim, ops::cpu_has_native_bf16());
  StepChoice choice;
  if (candidates.size() == 1) {
    choice.chosen = candidates.front();
  } else {
    std::vector<double> seconds;
    {
      ModelSnapshot snapshot(model);
      seconds = time_candidates(model, make_batch(), candidates, options);
    }
    if (comm != nullptr && comm->world_size() > 1) {
      std::vector<at::Tensor> summed = {torch::tensor(seconds, torch::kFloat64)};
      comm->all_reduce_sum(summed);
      for (size_t i = 0; i < seconds.size(); ++i) seconds[i] = summed[0][static_cast<int64_t>(i)].item<double>();
    }
    size_t next = 0;
    choice = choose_fastest(candidates, [&](const StepSettings&) { return seconds[next++]; });
  }
  apply_step_settings(model, choice.chosen);
  return choice;
}

}  // namespace instseg
