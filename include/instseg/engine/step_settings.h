#pragma once
// How a training step computes on this CPU: the precision (fp32, or the forward pass under bf16
// autocast) and the activations' memory layout (contiguous NCHW or channels-last NHWC). Which is
// fastest differs by CPU (AMX, AVX512-BF16 without AMX, none) and by model size, so
// optim.precision / optim.memory_format either fix them or say "auto": then the open candidates
// are timed on one batch at start-up and the fastest is kept. The run records the choice
// (train_state.pth), so --resume continues with the same arithmetic.
#include <functional>
#include <string>
#include <vector>

namespace instseg {

struct OptimConfig;
class MaskRcnnImpl;
namespace data {
struct Batch;
}
namespace dist {
class Communicator;
}

struct StepSettings {
  bool bf16 = false;           // forward pass under CPU autocast to bfloat16 (ops/mixed_precision.h)
  bool channels_last = false;  // MaskRcnnImpl::set_channels_last_training
  // "fp32 contiguous", "bf16 channels_last", ...: the optim.precision and optim.memory_format words.
  std::string name() const;
  // The inverse of name(); ConfigError naming `where` for anything else.
  static StepSettings parse(const std::string& name, const std::string& where);
  bool operator==(const StepSettings& other) const {
    return bf16 == other.bf16 && channels_last == other.channels_last;
  }
};

struct StepTrial {
  StepSettings settings;
  double seconds = 0.0;  // one forward + backward pass on the measured batch (the fastest repeat)
};

struct StepChoice {
  StepSettings chosen;
  std::vector<StepTrial> trials;  // empty when the config fixed everything (nothing was timed)
  // One line for the run's output: the choice and, when measured, every candidate's time.
  std::string summary() const;
};

// The settings a config leaves open, in a fixed order. A fixed word gives itself. precision "auto"
// gives fp32 and, where the CPU has bfloat16 arithmetic natively, bf16 too (elsewhere oneDNN
// emulates bf16, slower than fp32 on every CPU measured, so it is not timed). memory_format "auto"
// gives contiguous and channels_last.
std::vector<StepSettings> step_candidates(const OptimConfig& optim, bool native_bf16);

// The candidate with the smallest `seconds` (ties: the earlier one); with one candidate nothing is
// timed. `seconds` is called once per candidate, in order.
StepChoice choose_fastest(const std::vector<StepSettings>& candidates,
                          const std::function<double(const StepSettings&)>& seconds);

struct StepMeasureOptions {
  int warmup = 1;   // untimed rounds: oneDNN builds its primitives on a candidate's first pass
  int repeats = 2;  // timed rounds; each candidate's fastest pass counts (the machine is noisy)
};

// optim's candidates, each timed as forward (losses) + backward passes of `model` in training mode
// on the batch `make_batch` gives (called only when there is more than one candidate), in rounds of one pass per candidate (a burst of outside load then slows a round of all
// of them, not every pass of one); the choice is applied to the model (apply_step_settings). Afterwards the weights,
// buffers (batch norm statistics), gradients and torch's global RNG are as before: the run
// trains as if nothing had been timed. In a job of several processes every rank times the
// candidates and the summed times decide, so every rank chooses alike.
StepChoice measure_step_settings(MaskRcnnImpl& model, const std::function<data::Batch()>& make_batch,
                                 const OptimConfig& optim,
                                 dist::Communicator* comm = nullptr, StepMeasureOptions options = {});

// The model's part of `settings` (its layout); the bf16 part is the step's autocast scope.
void apply_step_settings(MaskRcnnImpl& model, const StepSettings& settings);

}  // namespace instseg
