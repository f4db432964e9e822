#include <CLI/CLI.hpp>
#include <torch/torch.h>

#include <iostream>
#include <vector>

#include "instseg/cli/commands.h"
#include "instseg/engine/eval_job.h"
#include "instseg/errors.h"
#include "cli/launched_job.h"

namespace instseg::cli {

void register_eval(CLI::App& app) {
  auto args = std::make_shared<EvalJobOptions>();
  auto dist_timeout = std::make_shared<int>(300);
  auto* cmd = app.add_subcommand("eval", "Score COCO results against COCO ground truth (AP / AR as pycocotools)");
  cmd->add_option("--gt", args->gt, "COCO instances JSON (ground truth)")->required();
  cmd->add_option("--results", args->results, "COCO results JSON (list of detections)")->required();
  cmd->add_option("--iou-type", args->iou_type, "bbox, segm, or both (segm only when results have masks)")
      ->check(CLI::IsMember({"bbox", "segm", "both"}))
      ->capture_default_str();
  cmd->add_option("--json", args->json_out, "Write {\"bbox\": {\"stats\": [...], \"per_category\": {...}}, ...}");
  cmd->add_option("--threads", args->threads, "Worker threads (0 = all cores); results do not depend on it")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--plots", args->plots_dir, "Write precision-recall curves and a confusion matrix (PNG, CSV) here");
  cmd->add_flag("--per-class", args->per_class, "Also print AP50, AP75 and the GT count per category");
  cmd->add_option("--dist-timeout", *dist_timeout, kDistTimeoutHelp)->check(CLI::PositiveNumber)->capture_default_str();
  cmd->footer(
      "Prints COCOeval.summarize()'s 12 lines and a per-category AP table for each IoU type; the "
      "numbers equal pycocotools 2.0 with default parameters. Results are checked first, each error "
      "naming the file, the result index and the field: an empty list, an unknown image id "
      "(pycocotools asserts) or category id (pycocotools silently drops those; here it is an error), "
      "a non-finite score (NaN is not JSON), a malformed compressed RLE or one sized unlike its "
      "image, a missing bbox when the first result has one. --iou-type segm needs masks.\n\n"
      "In a job launched by torchrun or Slurm, rank 0 alone scores, prints and writes (scoring is "
      "fast and reads one file); the other ranks wait for it (at most --dist-timeout) and exit "
      "without printing, with 0, or 1 when rank 0 failed.\n\n"
      "Examples:\n"
      "  instseg eval --gt val/annotations.json --results predictions/predictions.json\n"
      "  instseg eval --gt val/annotations.json --results runs/first/val_predictions.json \\\n"
      "      --per-class --json scores.json --plots plots/\n"
      "  instseg eval --gt val/annotations.json --results predictions.json --iou-type bbox");
  cmd->callback([args, dist_timeout] {
    args->validate();  // before joining: a mistake is reported at once, not after the others
    const auto job = join_launched_job(*dist_timeout);
    if (!job) {
      run_eval_job(*args, std::cout);
      return;
    }
    // Rank 0 scores; the others learn whether it succeeded (a broadcast doubles as the barrier), so
    // that every rank's exit status is the job's.
    std::vector<at::Tensor> failed = {torch::zeros({1}, torch::kInt64)};
    if (job->is_main()) {
      try {
        run_eval_job(*args, std::cout);
      } catch (...) {
        failed[0].fill_(1);
        try {
          job->broadcast(failed, 0);
        } catch (const std::exception&) {  // the others gone too: rank 0's own error is the one to report
        }
        throw;
      }
    }
    job->broadcast(failed, 0);
    if (!job->is_main() && failed[0].item<int64_t>() != 0) throw CommandFailed("eval failed on rank 0 (its error above)");
  });
}

}  // namespace instseg::cli
