#pragma once
// explain's inference view: what a trained model computes on one image, stage by stage (FPN
// features, RPN objectness, proposals, RoI levels and sampling points, box scores, masks).
#include "explain_input.h"
#include "figure_writer.h"

namespace instseg::explain {

// Needs input.has_weights. Writes its figures under "infer/".
void explain_inference(const ExplainInput& input, FigureWriter& writer);

}  // namespace instseg::explain
