// Time-budget fitting (run.time_limit_minutes): the iteration count is fitted to the measured
// speed, so the learning-rate schedule runs to its end inside the limit instead of being cut off
// mid-way. The first fit measures iterations 10..30 of this invocation (the first ones pay for
// oneDNN's primitive creation and first-touch memory); later fits every 50 iterations use the
// speed of the last 50, so that a noisy first measurement neither wastes the limit's end nor
// overruns it, and the slow-down as training finds more objects (more mask-head RoIs) is followed.
// A resumed run follows the length its checkpoint holds, without refitting. In a job, rank 0's
// clock decides both the fit and the stop, and broadcasts them, so every rank runs the same
// iterations (only with a limit: no collective per step otherwise).
#include <torch/torch.h>

#include <algorithm>
#include <chrono>

#include "engine/train_loop.h"

namespace instseg::training {

namespace {

class TimeBudgetHook : public HookBase {
 public:
  void before_train(TrainLoop& loop) override {
    limit_seconds_ = 60.0 * loop.config.run.time_limit_minutes;
    fit_ = limit_seconds_ > 0 && loop.state.total_iterations == 0;
    window_start_ = std::chrono::steady_clock::now();
  }

  // Steps slow down as the RPN finds more objects (more mask-head RoIs), so the fit may run long:
  // stop anyway when only the final validation's share of the limit is left. The first step of an
  // invocation always runs: a limit used up by the set-up (the step-settings probe on a loaded
  // machine) would otherwise leave a checkpoint without optimizer state and a validation of an
  // untrained model. Every rank skips the same step, so no collective is missed.
  void before_step(TrainLoop& loop) override {
    if (limit_seconds_ <= 0 || loop.iteration == loop.first) return;
    const bool late = loop.elapsed_seconds() > limit_seconds_ - validation_reserve_;
    if (decided_by_rank0(loop, late ? 1 : 0) != 0) loop.stop_by_time_limit();
  }

  void after_step(TrainLoop& loop) override {
    if (!fit_) return;
    const int run = loop.iteration - loop.first;
    if (run == kCalibrationStart) window_start_ = std::chrono::steady_clock::now();
    if (run == kCalibrationEnd) fit(loop, kCalibrationEnd - kCalibrationStart);
    if (run > kCalibrationEnd && (run - kCalibrationEnd) % kRefitEvery == 0) fit(loop, kRefitEvery);
  }

 private:
  static constexpr int kCalibrationStart = 10, kCalibrationEnd = 30, kRefitEvery = 50;

  // Rank 0's value on every rank (all ranks call it at the same steps).
  static int64_t decided_by_rank0(TrainLoop& loop, int64_t value) {
    if (loop.comm.world_size() == 1) return value;
    std::vector<at::Tensor> decision = {torch::full({1}, value, torch::kInt64)};
    loop.comm.broadcast(decision, 0);
    return decision[0].item<int64_t>();
  }

  void fit(TrainLoop& loop, int window_iterations) {
    const double per_iteration =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - window_start_).count() / window_iterations;
    // The final validation predicts each image about as fast as a training step handles a batch
    // (twice that, to be safe).
    validation_reserve_ = loop.has_validation() ? 2.0 * per_iteration * static_cast<double>(loop.data.val_set()->size()) /
                                                      loop.config.optim.batch_size
                                                : 0.0;
    const double remaining = limit_seconds_ - loop.elapsed_seconds() - validation_reserve_;
    const int fitted = static_cast<int>(decided_by_rank0(
        loop, std::min(loop.config.optim.iterations,
                       loop.iteration + std::max(0, static_cast<int>(0.98 * remaining / per_iteration)))));
    if (fitted != loop.schedule.iterations) loop.set_total_iterations(fitted);
    window_start_ = std::chrono::steady_clock::now();
  }

  double limit_seconds_ = 0.0;
  bool fit_ = false;
  std::chrono::steady_clock::time_point window_start_;
  double validation_reserve_ = 0.0;  // seconds kept for the final validation, once the speed is known
};

}  // namespace

std::unique_ptr<HookBase> time_budget_hook() { return std::make_unique<TimeBudgetHook>(); }

}  // namespace instseg::training
