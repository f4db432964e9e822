#pragma once
// Detections -> COCO results (in memory for the evaluator, or the JSON file pycocotools reads).
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "instseg/coco/results.h"
#include "instseg/data/dataset.h"
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

// Accumulates results of many images and writes them as a COCO results JSON list, each entry
// with a "file_name" beside the standard fields.
class ResultsJsonWriter {
 public:
  void add(int64_t image_id, const std::string& file_name, const Detections& detections);
  // Results made by to_coco_detections.
  void add(const std::vector<coco::Detection>& results, const std::string& file_name);
  std::string dump() const;  // the whole list as JSON text
  size_t size() const { return entries_.size(); }

 private:
  std::vector<std::string> entries_;  // each a serialised JSON object
};

// file_name -> image id, from a COCO instances JSON.
std::map<std::string, int64_t> image_ids_by_file_name(const std::string& instances_json);

}  // namespace instseg
