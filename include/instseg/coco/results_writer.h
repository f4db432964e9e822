#pragma once
// Writing COCO results files (the format read_results reads): a JSON list with one entry per
// detection, {bbox, category_id, image_id, score} and the mask as compressed RLE
// {counts, size}, plus an optional "file_name" (predict's key: which image of a folder a result
// belongs to; pycocotools ignores it). One entry per line, keys in sorted order:
//   [
//   {"bbox":[1.5,2.0,30.25,40.0],"category_id":1,"file_name":"a.jpg","image_id":7,"score":0.98,"segmentation":{...}},
//   ...
//   ]
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "instseg/coco/results.h"

namespace instseg::coco {

// Accumulates the results of many images, then gives the text or writes the file.
class ResultsWriter {
 public:
  // One entry per detection, in order. A detection without a box (has_bbox false) is written
  // without "bbox"; a non-empty `file_name` is written as "file_name". Throws InputError when
  // `file_name` is not valid UTF-8.
  void add(const std::vector<Detection>& detections, std::string_view file_name = {});
  size_t size() const { return count_; }  // entries so far
  std::string dump() const;               // the whole list, ending in a newline
  void write(const std::string& path) const;  // dump(), written atomically

 private:
  std::string entries_;  // the entries written so far, joined by ",\n"
  size_t count_ = 0;
};

// The detections as a results file (no file names), written atomically.
void write_results(const std::string& path, const std::vector<Detection>& detections);

}  // namespace instseg::coco
