#pragma once
// The newcomer's first command: generate a synthetic shapes dataset, train a small Mask R-CNN on
// it within a time budget, evaluate it, and leave pictures, curves and COCO files to inspect.
#include <string>

#include "instseg/engine/train_config.h"

namespace instseg {

struct DemoOptions {
  std::string out_dir = "out/demo";
  double minutes = 10.0;  // wall-clock budget for training and the final validation
  int threads = 0;        // 0 = every core
  int overlays = 8;       // validation images drawn with their predictions
  bool overwrite = false; // replace a run already in out_dir (else it is refused)
  void validate() const;
};

// The demo's training configuration: configs/demo.json (compiled in) with the options' threads and
// time budget: ResNet-18-FPN with narrow heads, batch norm from scratch, 128x128 synthetic images.
TrainConfig demo_train_config(const DemoOptions& options);

struct DemoOutcome {
  double box_ap = 0, mask_ap = 0;  // COCO AP 0.50:0.95 on the synthetic validation split
  int iterations = 0;
};

// Runs everything and prints the final table. Files in out_dir: the trainer's (model_last.pth,
// metrics.json, val_annotations.json, val_predictions.json, log.jsonl, ...) plus
// overlays/val_<id>.png, curves_loss.png and curves_ap.png. A folder holding any of them is
// refused (ConfigError naming it and --overwrite) unless options.overwrite, which removes exactly
// those files first.
DemoOutcome run_demo(const DemoOptions& options);

}  // namespace instseg
