#pragma once
// The training loop: SGD with warm-up and decay, a progress bar, a JSON-lines log, periodic
// validation with COCO box/mask AP and validation losses, best and last checkpoints, exact resume.
// Inside, a step function plus hooks (src/engine/train_loop.h, src/engine/hooks/). Validation
// predicts through inference_on_dataset (engine/inference.h), as `predict` does, and its losses
// draw from a generator of their own: run.eval_every does not change the training.
//
// Files in the run folder:
//   config.json         the full configuration used
//   categories.json     the data's category ids and names by label
//   log.jsonl           one JSON object per line: {"type": "train" | "val", "iteration", ...}
//   model_last.pth      weights in torchvision's layout (torch.load + load_state_dict work)
//   model_best.pth      weights of the best validation mask AP (box AP without masks)
//   train_state.pth     weights + optimizer + RNG + data position, read by --resume
//   metrics.json        last validation, in the layout of `instseg eval --json`
//   val_predictions.json, val_annotations.json   last validation's results and its ground truth
//
// The checkpoint set is train_state.pth alone: weights, optimizer, RNG, data position, iteration,
// best score and the byte length of log.jsonl at that moment, written to a temporary name and
// renamed (the commit). model_last.pth is then published from the same weights; --resume
// rewrites it from train_state.pth and cuts log.jsonl back to the recorded length, so a kill at
// any moment resumes into the files an uninterrupted run writes (docs/training.md, "Kills and resume").
#include <array>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "instseg/engine/train_config.h"

namespace instseg::dist {
class Communicator;
}

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

// What train() does with a run folder that already holds a run (any file of run_file_names()).
enum class ExistingRun {
  kRefuse,     // ConfigError naming the folder, --resume and --overwrite; nothing is touched
  kResume,     // continue from its train_state.pth (CheckpointError when there is none)
  kOverwrite,  // remove the previous run's files (only those of run_file_names()), then start afresh
};

struct TrainRunOptions {
  ExistingRun existing_run = ExistingRun::kRefuse;
  // Test seam for kills: called with "state committed" and "model_last written" inside each
  // checkpoint and with "iteration" at the end of each iteration (after its log, validation and
  // checkpoint), with the iteration. An exception thrown from it leaves the folder as a kill at that
  // moment would (except before a fresh run's first checkpoint: its files are then removed).
  std::function<void(const std::string& moment, int iteration)> probe;
  // The job this process is a rank of (dist::join from the launch variables); null: one process.
  // Every rank calls train() with the same config; rank 0 alone writes the run folder.
  dist::Communicator* communicator = nullptr;
};

// Runs (or continues) training into out_dir. The data is loaded, the batch size checked against
// it, the model built and any resumed state read before anything is written; a fresh run that
// fails before its first checkpoint removes the files it wrote. Throws ConfigError, InputError,
// CheckpointError or TrainingError (non-finite loss or out of memory in a step: the message names
// the iteration and images; the last checkpoint on disk is the last good one).
TrainOutcome train(const TrainConfig& config, const std::string& out_dir, const TrainRunOptions& options);
// resume = true: ExistingRun::kResume; false: kRefuse.
TrainOutcome train(const TrainConfig& config, const std::string& out_dir, bool resume);

// The files train() writes into a run folder, relative to it (each briefly also as NAME.tmp).
const std::vector<std::string>& run_file_names();
// Those of `names` (and their NAME.tmp) that exist in `dir`, relative to it; none when dir does not exist.
std::vector<std::string> existing_files(const std::string& dir, const std::vector<std::string>& names);
// Removes exactly the files existing_files() lists; nothing else in `dir`.
void remove_files(const std::string& dir, const std::vector<std::string>& names);

}  // namespace instseg
