// The train records of log.jsonl, every run.log_every iterations and at this invocation's last:
// the step's learning rate, total loss and loss terms, gradient norm (before clipping), the speed
// since the previous record and the time since train() was called.
#include <nlohmann/json.hpp>

#include "engine/train_loop.h"

namespace instseg::training {

namespace {

class LogHook : public HookBase {
 public:
  void before_train(TrainLoop&) override { since_ = std::chrono::steady_clock::now(); }

  void after_step(TrainLoop& loop) override {
    images_ += loop.step.images;
    const int done = loop.iteration;
    if (done % loop.config.run.log_every != 0 && done != loop.last) return;
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - since_).count();
    nlohmann::json entry = {{"type", "train"},
                            {"iteration", done},
                            {"lr", loop.step.lr},
                            {"loss", loop.step.total},
                            {"grad_norm", loop.step.grad_norm},
                            {"images_per_second", images_ / std::max(1e-9, seconds)},
                            {"elapsed_seconds", loop.elapsed_seconds()}};
    for (const auto& [name, value] : loop.step.losses) entry[name] = value;
    loop.log.write(entry.dump());
    loop.outcome.loss_history.emplace_back(done, loop.step.total);
    images_ = 0;
    since_ = std::chrono::steady_clock::now();
  }

 private:
  int images_ = 0;  // since the last record
  std::chrono::steady_clock::time_point since_;
};

}  // namespace

std::unique_ptr<HookBase> log_hook() { return std::make_unique<LogHook>(); }

}  // namespace instseg::training
