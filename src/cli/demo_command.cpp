#include <CLI/CLI.hpp>

#include "instseg/cli/commands.h"
#include "instseg/engine/demo.h"

namespace instseg::cli {

void register_demo(CLI::App& app) {
  auto options = std::make_shared<DemoOptions>();
  auto* cmd = app.add_subcommand(
      "demo", "Train a small Mask R-CNN on generated shapes, evaluate it and draw its predictions");
  cmd->add_option("--out", options->out_dir, "Output folder")->capture_default_str();
  cmd->add_option("--minutes", options->minutes, "Time budget for training and evaluation")->capture_default_str();
  cmd->add_option("--threads", options->threads, "Intra-op threads (0 = all cores)")->capture_default_str();
  cmd->add_option("--overlays", options->overlays, "Validation images to draw")->capture_default_str();
  cmd->add_flag("--overwrite", options->overwrite,
                "Replace the run already in --out (removes the files a demo writes there, nothing else)");
  cmd->footer(
      "Trains the recipe in configs/demo.json on generated shapes for --minutes, validating as it "
      "goes, then writes the run folder (checkpoints, log.jsonl, metrics.json, curves_*.png, "
      "overlays/) into --out.\n\n"
      "Examples:\n"
      "  instseg demo --out runs/demo\n"
      "  instseg demo --out runs/demo --minutes 2 --overlays 4 --overwrite\n"
      "  instseg eval --gt runs/demo/val_annotations.json --results runs/demo/val_predictions.json");
  cmd->callback([options] { run_demo(*options); });
}

}  // namespace instseg::cli
