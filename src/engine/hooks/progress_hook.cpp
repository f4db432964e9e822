// The progress bar (run.progress): iterations of the (possibly fitted) schedule, the loss terms
// and learning rate; with a time limit its ETA is the time budget's, not that of optim.iterations
// (an upper bound such as the demo's 100,000 until the first fit). Rank 0 alone shows it.
#include <cstdio>
#include <optional>

#include "instseg/common/progress_bar.h"
#include "engine/train_loop.h"

namespace instseg::training {

namespace {

class ProgressHook : public HookBase {
 public:
  void before_train(TrainLoop& loop) override {
    if (!loop.config.run.progress || !loop.comm.is_main()) return;
    bar_.emplace(loop.schedule.iterations, "train", "it");
    if (loop.config.run.time_limit_minutes > 0) bar_->set_time_budget(60.0 * loop.config.run.time_limit_minutes, loop.start);
  }

  void after_step(TrainLoop& loop) override {
    if (!bar_) return;
    char lr_text[32];
    std::snprintf(lr_text, sizeof lr_text, "lr %.2e", loop.step.lr);
    bar_->set_total(loop.schedule.iterations);  // a time limit's fit changes it
    bar_->update(loop.iteration, "loss " + std::to_string(loop.step.total).substr(0, 5) + " (" +
                                     format_losses(loop.step.losses) + ") " + lr_text);
  }

  void after_train(TrainLoop&) override {
    if (bar_) bar_->finish();
  }

 private:
  std::optional<ProgressBar> bar_;
};

}  // namespace

std::unique_ptr<HookBase> progress_hook() { return std::make_unique<ProgressHook>(); }

}  // namespace instseg::training
