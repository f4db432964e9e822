#include <CLI/CLI.hpp>

#include <iostream>

#include "instseg/cli/commands.h"
#include "instseg/explain/explain.h"

namespace instseg::cli {

void register_explain(CLI::App& app) {
  auto options = std::make_shared<ExplainOptions>();
  auto* cmd = app.add_subcommand("explain", "Show what Mask R-CNN computes on one image, stage by stage");
  cmd->add_option("--input", options->input, "The image")->required();
  cmd->add_option("--out", options->out_dir, "Output folder (pictures, a JSON of numbers beside each, index.json)")
      ->required();
  cmd->add_option("--weights", options->weights,
                  "a .pth checkpoint or a run folder: adds what the model computes (features, proposals, "
                  "detections, masks)");
  cmd->add_option("--gt", options->gt,
                  "COCO instances JSON holding the image (found by file name): adds how training sees it "
                  "(anchors, matches, samples, targets)");
  cmd->add_option("--config", options->config,
                  "Without --weights: a training config whose model section is the model to start from "
                  "(default: torchvision's v1 architecture), initialised from --seed");
  cmd->add_option("--min-size", options->min_size, "Resize the shorter side to this (0 = the model's)")
      ->capture_default_str();
  cmd->add_option("--max-size", options->max_size, "Cap the longer side (0 = the model's)")->capture_default_str();
  cmd->add_option("--seed", options->seed, "Seed of the training view's random draws (sampling; initialisation "
                  "without --weights)")
      ->capture_default_str();
  cmd->add_option("--format", options->format, "Pictures as png (exact) or jpg (small)")->capture_default_str();
  cmd->add_option("--threads", options->threads, "Intra-op threads (0 = all cores)")->capture_default_str();
  cmd->footer(
      "Writes OUT/train/*.png (with --gt) and OUT/infer/*.png (with --weights), each with a .json of the "
      "numbers it shows, and OUT/index.json listing them with captions. docs/tutorial explains each picture.\n\n"
      "Examples:\n"
      "  instseg explain --input datasets/tiny_coco/val2017/000000017627.jpg \\\n"
      "      --gt datasets/tiny_coco/annotations/instances_val2017.json --out explain/\n"
      "  instseg explain --input street.jpg --weights runs/first --out explain/");
  cmd->callback([options] { run_explain(*options); });
}

}  // namespace instseg::cli
