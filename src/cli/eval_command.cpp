#include <CLI/CLI.hpp>

#include <iostream>

#include "instseg/cli/commands.h"
#include "instseg/engine/eval_job.h"

namespace instseg::cli {

void register_eval(CLI::App& app) {
  auto args = std::make_shared<EvalJobOptions>();
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
  cmd->footer(
      "Prints COCOeval.summarize()'s 12 lines and a per-category AP table for each IoU type; the "
      "numbers equal pycocotools 2.0 with default parameters. Results are checked first, each error "
      "naming the file, the result index and the field: an empty list, an unknown image id "
      "(pycocotools asserts) or category id (pycocotools silently drops those; here it is an error), "
      "a non-finite score (NaN is not JSON), a malformed compressed RLE or one sized unlike its "
      "image, a missing bbox when the first result has one. --iou-type segm needs masks.\n\n"
      "Examples:\n"
      "  instseg eval --gt val/annotations.json --results predictions/predictions.json\n"
      "  instseg eval --gt val/annotations.json --results runs/first/val_predictions.json \\\n"
      "      --per-class --json scores.json --plots plots/\n"
      "  instseg eval --gt val/annotations.json --results predictions.json --iou-type bbox");
  cmd->callback([args] { run_eval_job(*args, std::cout); });
}

}  // namespace instseg::cli
