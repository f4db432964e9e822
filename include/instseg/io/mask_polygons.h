#pragma once
// COCO polygons from a mask: what `instseg serve` answers for ?mask_format=polygon.
#include <vector>

#include "instseg/coco/rle.h"

namespace instseg::io {

// The outer boundary of each connected part of the mask (8-connected, holes filled: a polygon list
// cannot say "minus this"), as COCO polygon lists [x1, y1, x2, y2, ...] in image coordinates.
// Convention: cv::findContours (RETR_EXTERNAL, CHAIN_APPROX_SIMPLE) gives the boundary pixels'
// indices; +0.5 puts each vertex at its pixel's centre (COCO's pixel (i, j) covers [i, i+1) x
// [j, j+1)), so a polygon traces through the centres of the mask's outermost pixels and, filled
// again (coco::from_polygons), gives back the mask less about half a pixel along its border (a
// w x h rectangle comes back as (w - 1) x (h - 1)): the convention of Detectron2's polygons.
// Parts of fewer than 3 vertices (a single pixel, a one-pixel line) have no area and are left out:
// COCO readers take a list of 4 values for a box. Parts come in findContours' order.
std::vector<std::vector<double>> mask_polygons(const coco::Rle& mask);

}  // namespace instseg::io
