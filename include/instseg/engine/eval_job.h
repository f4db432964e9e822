#pragma once
// The eval job: COCO ground truth + a COCO results file -> pycocotools' numbers (printed, and as
// JSON), optionally precision-recall curves and confusion matrices. `instseg eval` is this job.
#include <iosfwd>
#include <string>
#include <vector>

#include "instseg/evaluation/coco_evaluator.h"
#include "instseg/evaluation/confusion.h"

namespace instseg {

struct EvalJobOptions {
  std::string gt;                 // COCO instances JSON (ground truth)
  std::string results;            // COCO results JSON; read once, so a pipe works too
  // "bbox" | "segm" | "both". "both" scores segm only when every result has a mask; "segm"
  // without masks is an InputError.
  std::string iou_type = "both";
  int threads = 0;                // worker threads; 0 = every core. The numbers do not depend on it
  // "" = none; else {"bbox": {"stats": [...], "per_category": {...}}, ...}, written atomically once
  // every IoU type is scored (a failed job writes nothing).
  std::string json_out;
  // "" = none; else, per IoU type, precision-recall curves and a confusion matrix (PNG, CSV) here.
  std::string plots_dir;
  bool per_class = false;         // the printed table adds AP50, AP75 and the GT count per category
  void validate() const;          // ConfigError naming the field
};

struct EvalJobOutcome {
  std::vector<evaluation::EvalResult> results;           // one per IoU type scored, bbox first
  std::vector<evaluation::ConfusionMatrix> confusion;   // with plots_dir only, one per IoU type
  std::vector<std::string> plot_files;                  // the files written into plots_dir
};

// Runs the job, printing to `out` per IoU type: a header line, COCOeval.summarize()'s 12 lines
// and the per-category AP table. Bad results throw InputError naming the file, the result index
// and the field (coco/results.h), before anything is written.
EvalJobOutcome run_eval_job(const EvalJobOptions& options, std::ostream& out);

}  // namespace instseg
