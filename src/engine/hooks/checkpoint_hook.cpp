// Checkpoints, every run.checkpoint_every iterations and at the end. The commit is the rename of
// train_state.pth, which holds the whole set (weights, optimizer, RNG, data and log positions);
// model_last.pth follows from the same weights (trainer.h: why a kill at any moment resumes).
// Rank 0 writes them; every rank follows `committed` (the ranks step together).
#include <filesystem>

#include "instseg/checkpoint/state_dict.h"
#include "engine/train_loop.h"

namespace instseg::training {

namespace {

namespace fs = std::filesystem;

class CheckpointHook : public HookBase {
 public:
  // A kill after a checkpoint's commit and before model_last.pth was replaced leaves the previous
  // checkpoint's weights there: a resumed run publishes its set's own.
  void before_train(TrainLoop& loop) override {
    if (loop.resume && loop.comm.is_main()) save_state_dict(last_path(loop), module_state_dict(loop.model));
  }

  void after_step(TrainLoop& loop) override {
    if (loop.iteration % loop.config.run.checkpoint_every == 0 && loop.iteration < loop.last) checkpoint(loop);
  }

  // A finished run's last checkpoint follows its final validation: resuming it (e.g. after a kill
  // before model_last.pth was replaced) has nothing left to do.
  void after_train(TrainLoop& loop) override {
    if (!loop.nothing_left()) checkpoint(loop);
  }

 private:
  static std::string last_path(const TrainLoop& loop) { return (fs::path(loop.out_dir) / "model_last.pth").string(); }

  void checkpoint(TrainLoop& loop) {
    if (!loop.comm.is_main()) {
      loop.committed = true;
      return;
    }
    loop.state.iteration = loop.iteration;
    loop.state.loader = loop.loader.position();
    loop.state.log_bytes = loop.log.bytes();
    save_train_state((fs::path(loop.out_dir) / "train_state.pth").string(), loop.model, loop.optimizer,
                     loop.config.optim.optimizer, loop.state);
    loop.committed = true;
    loop.probe("state committed", loop.iteration);
    save_state_dict(last_path(loop), module_state_dict(loop.model));
    loop.probe("model_last written", loop.iteration);
  }
};

}  // namespace

std::unique_ptr<HookBase> checkpoint_hook() { return std::make_unique<CheckpointHook>(); }

}  // namespace instseg::training
