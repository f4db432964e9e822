#pragma once
// The training loop: SGD with warm-up and decay, a progress bar, a JSON-lines log, periodic
// validation with COCO box/mask AP and validation losses, best and last checkpoints, exact resume.
//
// Files in the run folder:
//   config.json         the full configuration used
//   log.jsonl           one JSON object per line: {"type": "train" | "val", "iteration", ...}
//   model_last.pth      weights in torchvision's layout (torch.load + load_state_dict work)
//   model_best.pth      weights of the best validation mask AP (box AP without masks)
//   train_state.pth     weights + optimizer + RNG + data position, read by --resume
//   metrics.json        last validation, in the layout of `instseg eval --json`
//   val_predictions.json, val_annotations.json   last validation's results and its ground truth
#include <array>
#include <map>
#include <string>
#include <vector>

#include "instseg/engine/train_config.h"

namespace instseg {

struct ValidationRecord {
  int iteration = 0;
  std::array<double, 12> bbox_stats{};  // COCOeval.stats order
  std::array<double, 12> segm_stats{};
  std::map<std::string, double> losses;  // mean validation loss terms
};

struct TrainOutcome {
  int iterations_done = 0;
  double seconds = 0.0;
  bool stopped_by_time_limit = false;
  std::vector<ValidationRecord> validations;
  std::vector<std::pair<int, double>> loss_history;  // (iteration, total loss), every log_every
};

// Runs (or with resume = true, continues) training into out_dir. Throws ConfigError, InputError,
// CheckpointError or TrainingError (non-finite loss: the message names the iteration and images;
// the last checkpoint on disk is the last good one).
TrainOutcome train(const TrainConfig& config, const std::string& out_dir, bool resume);

}  // namespace instseg
