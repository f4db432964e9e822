#pragma once
// `instseg explain`: what Mask R-CNN computes on one image, stage by stage, as pictures with the
// numbers behind each (a JSON file beside every picture). docs/tutorial is illustrated with them.
#include <cstdint>
#include <string>
#include <vector>

namespace instseg {

struct ExplainOptions {
  std::string input;    // the image
  std::string out_dir;  // created when missing; pictures and their JSON are written into it
  // A .pth or a run folder (as `instseg predict --weights`): adds the inference view (what the
  // model computes). Without it the training view uses a model initialised from `seed`, as a
  // run from scratch starts.
  std::string weights;
  // A COCO instances JSON holding the image (matched by file name): adds the training view (how
  // training sees the image: anchors, matches, samples, targets).
  std::string gt;
  // Without weights: a training config (`instseg train --config`) whose model section describes
  // the model to start from, built as a run would build it (random where its model.weights load
  // nothing). Empty: torchvision's v1 architecture.
  std::string config;
  int min_size = 0;   // shorter side after resizing; 0 = the model's (its last transform.min_size)
  int max_size = 0;   // 0 = the model's
  uint64_t seed = 0;  // the training view's random draws (anchor and RoI sampling, initialisation)
  int threads = 0;    // intra-op threads; 0 = all cores
  // Picture format: "png" (exact pixels) or "jpg" (quality 90: a tenth of the size for photos;
  // what docs/tutorial keeps in the repository).
  std::string format = "png";
  bool progress = true;  // one line per picture on stderr
};

// One picture and the JSON of the numbers it shows, both relative to out_dir.
struct ExplainFigure {
  std::string picture;  // "train/03_anchor_matches.png" (or .jpg)
  std::string numbers;  // "train/03_anchor_matches.json"
  std::string caption;  // one sentence: what the picture shows
};

struct ExplainResult {
  std::vector<ExplainFigure> figures;  // in the order written; also listed in out_dir/index.json
};

// Throws InputError for bad input (neither weights nor gt, an unreadable image, an image not in
// the annotations), CheckpointError / ConfigError for bad weights. Nothing is written before the
// inputs are checked.
ExplainResult run_explain(const ExplainOptions& options);

}  // namespace instseg
