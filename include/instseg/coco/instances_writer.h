#pragma once
// Writing COCO instances JSON (the format Dataset::load reads): images, categories and
// annotations, masks as compressed RLE (polygons stay polygons), readable by pycocotools' COCO().
#include <string>

#include "instseg/coco/dataset.h"

namespace instseg::coco {

// The whole file as text: {"annotations": [...], "categories": [...], "images": [...]} and a
// newline, keys in sorted order. Throws InputError naming the entry when a file or category name
// is not valid UTF-8.
std::string instances_json(const Dataset& dataset);
// The same, written atomically (name.tmp, then renamed).
void write_instances(const std::string& path, const Dataset& dataset);

}  // namespace instseg::coco
