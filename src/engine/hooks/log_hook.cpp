// The train records of log.jsonl, every run.log_every iterations and at this invocation's last:
// the step's learning rate, total loss and loss terms, gradient norm (before clipping), the speed
// since the previous record and the time since train() was called, and per step since the previous
// record the mean seconds spent waiting for data and for gradient all-reduces ("sync_seconds":
// what the overlap with the backward pass did not hide) and in the forward passes, the backward
// passes and the optimizer (norm, clipping, update). Rank 0 writes; every rank keeps the
// outcome's loss history (the losses are the job's, the same on every rank).
#include <nlohmann/json.hpp>

#include "engine/train_loop.h"

namespace instseg::training {

namespace {

class LogHook : public HookBase {
 public:
  void before_train(TrainLoop&) override { since_ = std::chrono::steady_clock::now(); }

  void after_step(TrainLoop& loop) override {
    images_ += loop.step.images;
    data_seconds_ += loop.step.data_seconds;
    sync_seconds_ += loop.step.sync_seconds;
    forward_seconds_ += loop.step.forward_seconds;
    backward_seconds_ += loop.step.backward_seconds;
    optimizer_seconds_ += loop.step.optimizer_seconds;
    ++steps_;
    const int done = loop.iteration;
    if (done % loop.config.run.log_every != 0 && done != loop.last) return;
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - since_).count();
    nlohmann::json entry = {{"type", "train"},
                            {"iteration", done},
                            {"lr", loop.step.lr},
                            {"loss", loop.step.total},
                            {"grad_norm", loop.step.grad_norm},
                            // every rank's images: the job's speed
                            {"images_per_second", images_ * loop.comm.world_size() / std::max(1e-9, seconds)},
                            {"data_seconds", data_seconds_ / steps_},
                            {"sync_seconds", sync_seconds_ / steps_},
                            {"forward_seconds", forward_seconds_ / steps_},
                            {"backward_seconds", backward_seconds_ / steps_},
                            {"optimizer_seconds", optimizer_seconds_ / steps_},
                            {"elapsed_seconds", loop.elapsed_seconds()}};
    for (const auto& [name, value] : loop.step.losses) entry[name] = value;
    if (loop.comm.is_main()) loop.log.write(entry.dump());
    loop.outcome.loss_history.emplace_back(done, loop.step.total);
    images_ = steps_ = 0;
    data_seconds_ = sync_seconds_ = forward_seconds_ = backward_seconds_ = optimizer_seconds_ = 0.0;
    since_ = std::chrono::steady_clock::now();
  }

 private:
  int images_ = 0;  // since the last record (this rank's)
  int steps_ = 0;
  double data_seconds_ = 0.0, sync_seconds_ = 0.0, forward_seconds_ = 0.0, backward_seconds_ = 0.0,
         optimizer_seconds_ = 0.0;
  std::chrono::steady_clock::time_point since_;
};

}  // namespace

std::unique_ptr<HookBase> log_hook() { return std::make_unique<LogHook>(); }

}  // namespace instseg::training
