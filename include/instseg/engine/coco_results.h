#pragma once
// Detections (tensors) -> COCO results (coco::Detection), for the evaluator in memory or for a
// results file through coco::ResultsWriter (include/instseg/coco/results_writer.h).
#include <cstdint>
#include <vector>

#include "instseg/coco/results.h"
#include "instseg/data/category_map.h"
#include "instseg/modeling/roi_heads/paste_masks.h"
#include "instseg/structures/detections.h"

namespace instseg {

// One COCO result per detection: category_id = label, bbox [x, y, w, h], score, and the mask
// binarised at mask > mask_thresh (torchvision's convention) as RLE when masks are present.
std::vector<coco::Detection> to_coco_detections(int64_t image_id, const Detections& detections,
                                                double mask_thresh = 0.5);
// The same results for detections whose masks are still per box (MaskRcnn::predict_box_masks),
// each mask pasted, binarised and run-length encoded in turn: memory follows one box instead of
// K image-sized masks. Byte for byte the RLE of the whole paste. mask_thresh must be >= 0 (the
// image outside the paste is 0, never above it).
std::vector<coco::Detection> to_coco_detections(int64_t image_id, const Detections& detections,
                                                const MaskPaster& masks, double mask_thresh = 0.5);

// Model labels (1..K) -> the data's category ids, for results files and the evaluator.
Detections with_category_ids(Detections detections, const data::CategoryMap& categories);

}  // namespace instseg
