#pragma once
// Old path, kept until its callers move (issue 17; the lead moves them at integration):
//   to_coco_detections, with_category_ids  -> instseg/engine/coco_results.h
//   ResultsJsonWriter                      -> coco::ResultsWriter (instseg/coco/results_writer.h):
//       writer.add(image_id, file, detections) is writer.add(to_coco_detections(image_id, detections), file)
//   image_ids_by_file_name(path)           -> coco::image_ids_by_file_name(coco::Dataset::load(path))
// Nothing new belongs here; delete this header once nothing includes it.
#include <cstdint>
#include <map>
#include <string>

#include "instseg/coco/dataset.h"
#include "instseg/coco/results_writer.h"
#include "instseg/engine/coco_results.h"

namespace instseg {

class ResultsJsonWriter : public coco::ResultsWriter {
 public:
  using coco::ResultsWriter::add;
  void add(int64_t image_id, const std::string& file_name, const Detections& detections) {
    add(to_coco_detections(image_id, detections), file_name);
  }
};

inline std::map<std::string, int64_t> image_ids_by_file_name(const std::string& instances_json) {
  return coco::image_ids_by_file_name(coco::Dataset::load(instances_json));
}

}  // namespace instseg
