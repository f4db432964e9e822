#pragma once
// COCO run-length encoded masks, bit-for-bit as pycocotools.mask (cocoapi's maskApi.c).
// A mask of h rows and w columns is scanned column after column (column-major); `counts` are the
// lengths of alternating runs of 0s and 1s, starting with 0s (the first run may be empty).
// Positions are 32-bit, as in maskApi: every function that makes or reads a mask throws InputError
// when h * w exceeds kMaxMaskPixels (maskApi would wrap around silently).
#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace instseg::coco {

// Largest h * w a mask may have: runs and positions are uint32 in the COCO format.
constexpr uint64_t kMaxMaskPixels = UINT32_MAX;
// Largest |coordinate| of a polygon, in pixels: ten times the largest image side the readers
// accept (2^20). Keeps maskApi's integer arithmetic (5x upsampled, int) far from overflow, which
// starts near 4.3e8; real data lies inside the image or a few pixels outside.
constexpr double kMaxPolygonCoordinate = 1e7;

struct Rle {
  uint32_t h = 0;
  uint32_t w = 0;
  std::vector<uint32_t> counts;  // run lengths; sum is h * w for a well-formed mask
};

// mask: h * w bytes in row-major order (as an image); any non-zero byte is foreground.
Rle encode(const uint8_t* mask, uint32_t h, uint32_t w);
// Row-major h * w bytes of 0/1.
std::vector<uint8_t> decode(const Rle& rle);

// The compressed `counts` string of the COCO JSON format (LEB128-like, deltas after the 3rd run).
std::string to_string(const Rle& rle);
// Parses a compressed `counts` string. Throws InputError (without a file name: callers add it)
// when the string is truncated, has a character outside '0'..'o', or its runs do not sum to h * w.
Rle from_string(const std::string& counts, uint32_t h, uint32_t w);
// Same from characters in place (e.g. inside a file's text).
Rle from_string(const char* counts, size_t length, uint32_t h, uint32_t w);
// Same into `out`, whose memory is reused (decoding mask after mask without new allocations).
void from_string(const char* counts, size_t length, uint32_t h, uint32_t w, Rle& out);
// Uncompressed counts, as an iscrowd annotation stores them. Throws InputError when the runs do
// not sum to h * w.
Rle from_uncompressed(const std::vector<uint32_t>& counts, uint32_t h, uint32_t w);

// One polygon [x0, y0, x1, y1, ...] rasterised as maskApi's rleFrPoly (5x upsampled boundary).
// A trailing odd value is ignored; fewer than 3 points give a degenerate (empty or thin) mask.
// Throws InputError naming the index of a coordinate that is not finite or beyond
// +-kMaxPolygonCoordinate. Memory: O(crossings of the boundary with the columns [0, w)), capped
// near the number of distinct crossing positions (at most h * w + 1); time O(those crossings).
Rle from_polygon(const std::vector<double>& xy, uint32_t h, uint32_t w);
// What COCO.annToRLE does for a polygon annotation: frPyObjects(polygons) then merge (union).
// Follows frPyObjects' dispatch on the first polygon: 4 values means a box in pycocotools (and a
// TypeError there), fewer than 4 is "not supported": both throw InputError here.
Rle from_polygons(const std::vector<std::vector<double>>& polygons, uint32_t h, uint32_t w);
// A box [x, y, width, height] rasterised as the polygon of its corners (maskApi's rleFrBbox).
// Corners are clamped to +-kMaxPolygonCoordinate first, which leaves the mask of an axis-aligned
// box unchanged (it is clipped to the image anyway): any finite box is fine; NaN throws.
Rle from_box(const std::array<double, 4>& box, uint32_t h, uint32_t w);

// Union (intersect = false) or intersection of masks of one size; masks of different sizes give
// an empty 0x0 mask, as maskApi's rleMerge.
Rle merge(const std::vector<Rle>& masks, bool intersect);

uint64_t area(const Rle& rle);
// Tight box [x, y, width, height] of the foreground; zeros for an empty mask.
std::array<double, 4> to_bbox(const Rle& rle);

// IoU of a result with a ground truth; for a crowd GT, intersection / area(dt). Masks of different
// sizes whose boxes overlap give -1, as maskApi's rleIou.
double iou(const Rle& dt, const Rle& gt, bool gt_is_crowd);
// iou() without its box pre-test: for callers that cache boxes and test box_iou > 0 first.
double mask_iou(const Rle& dt, const Rle& gt, bool gt_is_crowd);
// Same with the masks' area() known (computed once per mask instead of once per pair).
double mask_iou(const Rle& dt, const Rle& gt, bool gt_is_crowd, uint64_t dt_area, uint64_t gt_area);
// Pixels in both masks, which have the same size.
uint64_t intersection_area(const Rle& a, const Rle& b);
// Same for boxes [x, y, width, height].
double box_iou(const std::array<double, 4>& dt, const std::array<double, 4>& gt, bool gt_is_crowd);

}  // namespace instseg::coco
