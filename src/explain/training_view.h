#pragma once
// explain's training view: how training sees one image and its ground truth (resized input,
// anchors, anchor matching and sampling, regression targets, RoI sampling, mask targets).
#include "explain_input.h"
#include "figure_writer.h"

namespace instseg::explain {

// Needs input.targets. Writes its figures under "train/".
void explain_training(const ExplainInput& input, FigureWriter& writer);

}  // namespace instseg::explain
