#include "instseg/errors.h"
#include "instseg/modeling/roi_heads/paste_masks.h"
#include "instseg/ops/fused_conv.h"
#include "instseg/serve/server.h"

namespace instseg::serve {

namespace {
void require(bool ok, const std::string& option, const std::string& range, const std::string& got) {
  if (!ok) throw ConfigError("serve: " + option + " must be " + range + ", got " + got);
}
}  // namespace

void ServeOptions::validate() const {
  if (weights.empty()) throw ConfigError("serve: --weights is required");
  require(!host.empty(), "--host", "an address (127.0.0.1, 0.0.0.0, ::1)", "\"\"");
  require(port >= 0 && port <= 65535, "--port", "in 0..65535 (0 = any free port)", std::to_string(port));
  require(threads >= 0, "--threads", ">= 0 (0 = every core)", std::to_string(threads));
  require(max_batch >= 1 && max_batch <= 64, "--max-batch", "in 1..64", std::to_string(max_batch));
  require(batch_wait_ms >= 0 && batch_wait_ms <= 10000, "--batch-wait-ms", "in 0..10000", std::to_string(batch_wait_ms));
  require(max_queue >= 1 && max_queue <= 10000, "--max-queue", "in 1..10000", std::to_string(max_queue));
  require(max_image_pixels >= 1 && max_image_pixels <= data::kMaxImagePixelsCeiling, "--max-image-pixels",
          "in 1.." + std::to_string(data::kMaxImagePixelsCeiling) + " (OpenCV decodes no more)",
          std::to_string(max_image_pixels));
  require(max_body_bytes >= 1, "--max-body-bytes", ">= 1", std::to_string(max_body_bytes));
  require(request_timeout_seconds >= 1, "--request-timeout-seconds", ">= 1", std::to_string(request_timeout_seconds));
  require(score_thresh == -1.0 || (score_thresh >= 0.0 && score_thresh <= 1.0), "--score-thresh", "in [0, 1]",
          std::to_string(score_thresh));
  require(detections_per_image >= 0, "--detections-per-image", ">= 0 (0 = the model's)",
          std::to_string(detections_per_image));
  require(min_size >= 0 && max_size >= 0 && (min_size == 0 || max_size == 0 || max_size >= min_size),
          "--min-size / --max-size", ">= 0 with --min-size <= --max-size (0 = the model's)",
          std::to_string(min_size) + " / " + std::to_string(max_size));
  if (!mask_paste.empty()) mask_paste_named(mask_paste, "serve: --mask-paste");
  ops::inference_precision_named(precision, "serve: --precision");
}

}  // namespace instseg::serve
