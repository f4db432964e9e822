#include <CLI/CLI.hpp>

#include <iostream>

#include "instseg/cli/commands.h"
#include "instseg/engine/predictor.h"
#include "instseg/errors.h"
#include "cli/launched_job.h"

namespace instseg::cli {

void register_predict(CLI::App& app) {
  auto options = std::make_shared<PredictOptions>();
  auto dist_timeout = std::make_shared<int>(300);
  auto* cmd = app.add_subcommand("predict", "Segment images with a trained or torchvision Mask R-CNN");
  cmd->add_option("--weights", options->weights,
                  "a .pth checkpoint, or a run folder (its config.json and model_last.pth)")
      ->required();
  cmd->add_option("--input", options->inputs,
                  "Image files, folders of images, video files (.mp4 .avi .mkv .mov .webm ...) or image "
                  "sequences (frames/%04d.png)")
      ->required();
  cmd->add_option("--out", options->out_dir,
                  "Output folder (predictions.json and overlay pictures; for videos predictions.jsonl and "
                  "annotated videos)")
      ->required();
  cmd->add_option("--score-thresh", options->score_thresh,
                  "Drop detections scoring at or below this (default: the model's, from config.json beside "
                  "the weights, else torchvision's 0.05)");
  cmd->add_option("--detections-per-image", options->detections_per_image,
                  "Keep at most this many detections per image (default: the model's, else torchvision's 100)");
  cmd->add_option("--min-size", options->min_size,
                  "Resize shorter image side to this (0 = the training size from config.json beside the "
                  "weights, else 800)")
      ->capture_default_str();
  cmd->add_option("--max-size", options->max_size, "Cap the longer image side (0 = as --min-size, else 1333)")
      ->capture_default_str();
  cmd->add_option("--mask-paste", options->mask_paste,
                  "torchvision (its detections exactly) or aligned (masks placed where training sampled "
                  "them; better at strict IoU); default: model.mask_paste from config.json beside the "
                  "weights, else torchvision");
  cmd->add_option("--threads", options->threads, "Intra-op threads (0 = all cores)")->capture_default_str();
  cmd->add_option("--precision", options->precision,
                  "fp32: results equal torchvision's within float rounding; bf16: convolutions and "
                  "fully-connected layers in bfloat16 (fp32 accumulation), ~3x faster than fp32 on CPUs with AVX512-BF16 / "
                  "AMX, boxes and masks close to fp32's but not equal (docs/precision.md); without those "
                  "instructions oneDNN emulates bf16, slower than fp32")
      ->capture_default_str();
  cmd->add_flag("!--unfused", options->fused,
                "Run the stages' own module code (fp32, LibTorch's kernels) instead of the fused oneDNN path: "
                "the reference the fused path is tested against, about 2x slower (docs/inference_speed.md)");
  cmd->add_flag("--profile", options->profile,
                "After the run print per stage: ms per image, share of the model time, GFLOP per image, "
                "GFLOP/s and % of this machine's convolution rate (measured at the end, ~1-2 s); also writes "
                "OUT/profile.json (docs/inference_speed.md)");
  cmd->add_option("--batch", options->batch,
                  "Images per forward pass, 1..64 (several only where they share a size after resizing); "
                  "more memory per pass (docs/benchmarks.md)")
      ->capture_default_str();
  cmd->add_option("--coco-gt", options->coco_gt,
                  "COCO instances JSON: take image ids from it by file_name, so the output can be "
                  "scored with 'instseg eval'");
  cmd->add_option("--show-thresh", options->show_thresh, "Draw detections scoring at least this")
      ->capture_default_str();
  cmd->add_flag("!--no-overlays", options->overlays, "Skip the overlay pictures and annotated videos");
  cmd->add_option("--every", options->every,
                  "Videos: predict every Nth frame (0, N, 2N, ...); the annotated video keeps every frame, "
                  "drawn with the latest predicted frame's detections")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--fps", options->fps, "Frame rate of image-sequence inputs (video files carry their own)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--max-image-pixels", options->max_image_pixels,
                  "Refuse images of more pixels (width x height), from their header before decoding; "
                  "predicting takes ~45 bytes per pixel beside the model (docs/model.md). At most 2^30")
      ->capture_default_str();
  cmd->add_option("--dist-timeout", *dist_timeout, kDistTimeoutHelp)->check(CLI::PositiveNumber)->capture_default_str();
  cmd->footer(
      "Writes OUT/predictions.json in the COCO results format (image_id, category_id, bbox "
      "[x,y,w,h], score, segmentation as compressed RLE of mask > 0.5, file_name) and, per image, "
      "OUT/<name>.overlay.jpg (<name> is the file name without its extension, or with it when two "
      "inputs share a stem, as x.jpg and x.png). Inputs are told apart by file name: two with the "
      "same one (a/x.jpg and b/x.jpg) are refused before anything runs; predict them into separate "
      "--out folders. Category ids are the training data's (categories.json beside the weights), or a bare torchvision checkpoint's labels (COCO's ids). "
      "Unreadable or too large images are reported by name and the others predicted; the exit code "
      "is then 1. OUT is created only to write into it.\n\n"
      "Videos and image sequences are predicted frame by frame: OUT/predictions.jsonl holds a line per "
      "predicted frame ({\"file_name\", \"frame\", \"time\", \"results\": entries as in predictions.json, "
      "image_id = frame + 1}) and OUT/<stem>.overlay.mp4 the annotated video (same size and frame rate, "
      "mp4v). A truncated or damaged video keeps the frames read, is reported by name with the frame "
      "where decoding stopped, and the exit code is 1 (docs/video.md).\n\n"
      "In a job launched by torchrun or Slurm (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT set) the "
      "inputs are shared: rank r predicts inputs r, r + WORLD_SIZE, ... and draws their overlays; "
      "rank 0 writes predictions.json (the file one process writes) and prints the settings; every "
      "rank exits 1 when any input failed (docs/distributed.md).\n\n"
      "Examples:\n"
      "  instseg predict --weights maskrcnn_resnet50_fpn_coco.pth --input photos/ --out predictions/\n"
      "  instseg predict --weights runs/first --input val/images --out runs/first/val \\\n"
      "      --coco-gt val/annotations.json --no-overlays\n"
      "  instseg predict --weights runs/first/model_best.pth --input street.jpg --out out/ --show-thresh 0.3\n"
      "  instseg predict --weights runs/first --input traffic.mp4 --out out/ --every 2");
  cmd->callback([options, dist_timeout] {
    options->validate();  // before joining: a mistake is reported at once, not after the others
    const auto job = join_launched_job(*dist_timeout);
    PredictOptions run = *options;
    run.communicator = job.get();
    const auto summary = run_predict(run);
    if (!summary.failures.empty()) {
      throw CommandFailed(std::to_string(summary.failures.size()) + " of " +
                          std::to_string(summary.failures.size() + summary.images_done + summary.videos_done) +
                          " inputs could not be predicted (listed above)");
    }
  });
}

}  // namespace instseg::cli
