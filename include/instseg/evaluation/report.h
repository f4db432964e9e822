#pragma once
// Text and JSON reports of evaluation results (what `instseg eval` prints and writes).
#include <string>
#include <vector>

#include "instseg/evaluation/coco_evaluator.h"

namespace instseg::evaluation {

// One row per category: name and AP (IoU 0.50:0.95); with `detailed` also AP50, AP75 and the
// number of non-crowd GT instances. Undefined values (no GT) print as "-".
std::string category_table(const EvalResult& result, bool detailed);

// {"bbox": {"stats": [12 numbers], "per_category": {"<id>": ap, ...}}, "segm": {...}}
// (-1 where undefined, as COCOeval), one key per result.
std::string results_json(const std::vector<EvalResult>& results);

}  // namespace instseg::evaluation
