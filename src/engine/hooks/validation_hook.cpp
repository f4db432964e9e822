// Periodic validation (every run.eval_every iterations, and when the run finishes): COCO box and
// mask AP of the validation split's predictions and the mean validation losses
// (engine/validation.h: shared across the job's ranks, the numbers one process gets); the main
// rank writes val_predictions.json and metrics.json, logs a val record and keeps the best mask
// AP's weights in model_best.pth. Every rank records the validation and the best score.
#include <torch/torch.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "instseg/checkpoint/state_dict.h"
#include "instseg/common/atomic_file.h"
#include "instseg/engine/validation.h"
#include "instseg/evaluation/report.h"
#include "engine/train_loop.h"

namespace instseg::training {

namespace {

namespace fs = std::filesystem;

class ValidationHook : public HookBase {
 public:
  void after_step(TrainLoop& loop) override {
    const int done = loop.iteration;
    const int every = loop.config.run.eval_every;
    if (loop.has_validation() && every > 0 && done % every == 0 && done < loop.last) validate(loop);
  }

  // A run paused by run.stop_after is validated when it finishes, so that pausing changes nothing.
  void after_train(TrainLoop& loop) override {
    if (loop.has_validation() && loop.finished() && !loop.nothing_left()) validate(loop);
  }

 private:
  void validate(TrainLoop& loop) {
    const fs::path dir(loop.out_dir);
    // Eval mode, its own generator per image: the training's draws are untouched (engine/validation.h).
    const DatasetValidation validation =
        validate_on_dataset(loop.model, *loop.data.val_set(), loop.data.val_ground_truth(),
                            static_cast<uint64_t>(loop.config.run.seed), loop.comm);
    ValidationRecord record;
    record.iteration = loop.iteration;
    record.losses = validation.losses;
    record.bbox_stats = validation.bbox_stats;
    record.segm_stats = validation.segm_stats;
    // Every rank has the main rank's stats, so all agree on the best score (and keep it in their
    // checkpoint state alike); only the main rank writes.
    const double score = record.segm_stats[0];
    const bool best = score > loop.state.best_score;
    if (best) loop.state.best_score = score;
    if (loop.comm.is_main()) {
      write_bytes_atomically((dir / "val_predictions.json").string(), validation.predictions.results_json);
      write_bytes_atomically((dir / "metrics.json").string(), evaluation::results_json(validation.evaluations) + "\n");
      const nlohmann::json entry = {{"type", "val"},         {"iteration", record.iteration},
                                    {"bbox", record.bbox_stats}, {"segm", record.segm_stats},
                                    {"losses", record.losses},   {"bbox_AP", record.bbox_stats[0]},
                                    {"segm_AP", record.segm_stats[0]}};
      loop.log.write(entry.dump());
      if (best) save_state_dict((dir / "model_best.pth").string(), module_state_dict(loop.model));
    }
    loop.outcome.validations.push_back(record);
  }
};

}  // namespace

std::unique_ptr<HookBase> validation_hook() { return std::make_unique<ValidationHook>(); }

}  // namespace instseg::training
