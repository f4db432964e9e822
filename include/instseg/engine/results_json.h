#pragma once
// Detections -> COCO results JSON (the format `instseg eval` and pycocotools' loadRes read).
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "instseg/structures/detections.h"

namespace instseg {

class ResultsJsonWriter {
 public:
  // Appends one entry per detection: image_id, category_id (= label), bbox [x, y, w, h], score,
  // segmentation (compressed RLE of mask > mask_thresh) when masks are present, file_name.
  void add(int64_t image_id, const std::string& file_name, const Detections& detections,
           double mask_thresh = 0.5);
  std::string dump() const;  // the whole list as JSON text
  size_t size() const { return entries_.size(); }

 private:
  std::vector<std::string> entries_;  // each a serialised JSON object
};

// file_name -> image id, from a COCO instances JSON.
std::map<std::string, int64_t> image_ids_by_file_name(const std::string& instances_json);

}  // namespace instseg
