#pragma once
// The predict job: a checkpoint, images (files or folders) -> COCO results JSON + overlay pictures;
// videos and image sequences -> predictions.jsonl + annotated videos (engine/video_predictor.h).
#include <cstdint>
#include <string>
#include <vector>

#include "instseg/data/image_io.h"

namespace instseg::dist {
class Communicator;
}

namespace instseg {

struct PredictOptions {
  // A run folder, a .pth beside its config.json, or a bare torchvision .pth (engine/model_factory.h's
  // load_model); the settings below apply over the model's description.
  std::string weights;
  // Image files, folders of images (not recursive), video files and image-sequence patterns
  // (engine/video_predictor.h's is_video_input tells them apart).
  std::vector<std::string> inputs;
  // Receives predictions.json and one overlay picture per image; for videos predictions.jsonl (a
  // line per predicted frame) and <stem>.overlay.mp4 per video.
  std::string out_dir;
  // Detections scoring at or below are dropped; -1 = the model's (config.json's
  // model.roi_heads.score_thresh, else torchvision's 0.05).
  double score_thresh = -1.0;
  int detections_per_image = 0;     // at most this many per image; 0 = the model's (torchvision: 100)
  // Input size; 0 = the model's (the size it was trained at, from config.json), else torchvision's
  // transform defaults 800 / 1333.
  int min_size = 0;
  int max_size = 0;
  // "torchvision" | "aligned" (modeling/roi_heads/paste_masks.h); "" = model.mask_paste from
  // config.json beside the weights, else torchvision.
  std::string mask_paste;
  int threads = 0;                  // intra-op threads; 0 = every core (LibTorch starts with 1 here)
  // How the model computes (engine/model_factory.h ModelOverrides): "fp32" | "bf16" on the fused
  // path (MaskRcnn::prepare_inference); fused = false runs the stages' module code (fp32).
  std::string precision = "fp32";
  bool fused = true;
  // Prints the time per stage (common/stage_profile.h) with its GFLOP/s after the run.
  bool profile = false;
  // Images per forward pass (several only where they share a size after resizing).
  int batch = 1;
  std::string coco_gt;              // optional instances JSON: image ids are looked up by file_name
  double show_thresh = 0.5;         // overlay pictures draw detections scoring at least this
  // Larger images are refused from their header, before decoding (data/image_io.h); memory per
  // pixel: docs/model.md. 1 .. data::kMaxImagePixelsCeiling.
  int64_t max_image_pixels = data::kDefaultMaxImagePixels;
  bool overlays = true;               // pictures for images, annotated videos for videos
  bool progress = true;
  // Videos: predict frames 0, every, 2 * every, ... (the annotated video keeps every frame, drawn
  // with the latest predicted frame's detections); image sequences play at `fps` frames/s.
  int every = 1;
  double fps = 25.0;
  // The job this process is a rank of (dist::join from the launch variables); null: one process.
  // Rank r predicts the inputs i with i % world == r and draws their overlays; the main rank
  // alone writes predictions.json (every input's, in input order: one process's file, byte for
  // byte) and prints the settings and progress. Every rank is given the same options; out_dir
  // may be a folder of each node's own (no shared storage): a node then holds its ranks' overlays.
  dist::Communicator* communicator = nullptr;
  void validate() const;
};

// The job's, on every rank of a job (all ranks' images, failures in input order).
struct PredictSummary {
  int images_done = 0;
  int videos_done = 0;                // videos read to their end (a truncated one is a failure)
  int64_t video_frames = 0;           // frames predicted in videos, truncated ones included
  int detections = 0;
  // One message per input that could not be predicted (or a video that stopped early: its frames
  // read are in predictions.jsonl and its annotated video all the same).
  std::vector<std::string> failures;
  double seconds_per_image = 0.0;     // median model time per image (decode and drawing excluded)
};

// Runs the job. Unreadable or too large images are reported in `failures` (and on stderr) while
// the others are predicted; predictions.json is written atomically once all images are done
// (only when images are given), then the videos are predicted one after the other into
// predictions.jsonl (renamed into place once all are done). Videos need a job of one process. A bad
// checkpoint, options or inputs that share a file name throw before anything is written: the
// output folder is created only to write into it, and a run that fails half-way removes the
// overlays it wrote (and the folder if it made it).
PredictSummary run_predict(const PredictOptions& options);

// The image files that `inputs` names, folders expanded (sorted) to their image files.
// A missing path throws InputError naming it.
std::vector<std::string> collect_image_paths(const std::vector<std::string>& inputs);

// The overlay picture's file name for each image path: "<stem>.overlay.jpg", or
// "<file name>.overlay.jpg" for images whose stems coincide (x.jpg and x.png). Two paths with the
// same file name (the same file given twice, or a/x.jpg and b/x.jpg) throw InputError naming both:
// predictions.json tells images apart by file name, --coco-gt looks their ids up by it, and one
// overlay would replace the other.
std::vector<std::string> overlay_names(const std::vector<std::string>& image_paths);

}  // namespace instseg
