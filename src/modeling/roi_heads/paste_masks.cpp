#include "instseg/modeling/roi_heads/paste_masks.h"

#include <torch/torch.h>

#include <algorithm>

namespace instseg {
namespace {

// Source indices and weights of 1-D bilinear reads at given positions.
struct LinearTaps {
  torch::Tensor index0, index1;     // [positions] int64
  torch::Tensor weight0, weight1;   // [positions] float
};

// Taps at positions `src` along an axis of `size` samples; positions beyond either end read the
// end sample (for a zero-bordered mask: zero).
LinearTaps taps_at(const torch::Tensor& src, int64_t size) {
  const auto index0 = src.floor().clamp(0, size - 1).to(torch::kLong);
  const auto weight1 = (src - index0).clamp(0, 1);
  return {index0, (index0 + 1).clamp_max(size - 1), 1 - weight1, weight1};
}

// Taps of a 1-D bilinear resize (half-pixel centres, PyTorch's align_corners=False rule) from `in`
// samples to `out`, for outputs [begin, end) only.
LinearTaps resize_taps(int64_t in, int64_t out, int64_t begin, int64_t end, const torch::TensorOptions& options) {
  // float arithmetic in PyTorch's order, so weights equal F.interpolate's bit for bit
  const float scale = static_cast<float>(in) / static_cast<float>(out);
  return taps_at((torch::arange(begin, end, options) + 0.5f) * scale - 0.5f, in);  // < 0 reads sample 0
}

// Bilinear read of mask [S, S] at every (row, column) pair of the taps: [rows, cols].
torch::Tensor bilinear(const torch::Tensor& mask, const LinearTaps& rows, const LinearTaps& cols) {
  const auto r0 = rows.index0.unsqueeze(1), r1 = rows.index1.unsqueeze(1);  // [h, 1]
  const auto at = [&](const torch::Tensor& r, const torch::Tensor& c) { return mask.index({r, c}); };
  const auto top = at(r0, cols.index0) * cols.weight0 + at(r0, cols.index1) * cols.weight1;
  const auto bottom = at(r1, cols.index0) * cols.weight0 + at(r1, cols.index1) * cols.weight1;
  return rows.weight0.unsqueeze(1) * top + rows.weight1.unsqueeze(1) * bottom;
}

void check_paste_inputs(const torch::Tensor& masks, const torch::Tensor& boxes) {
  TORCH_CHECK(masks.dim() == 4 && masks.size(1) == 1 && masks.size(2) == masks.size(3),
              "paste_masks_in_image: masks must be [K, 1, M, M], got ", masks.sizes());
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(1) == 4 && boxes.size(0) == masks.size(0),
              "paste_masks_in_image: boxes must be [", masks.size(0), ", 4], got ", boxes.sizes());
}

}  // namespace

torch::Tensor paste_masks_in_image(const torch::Tensor& masks, const torch::Tensor& boxes,
                                   int64_t height, int64_t width, int64_t padding) {
  check_paste_inputs(masks, boxes);
  const int64_t m = masks.size(-1);
  const auto padded = torch::constant_pad_nd(masks, {padding, padding, padding, padding});  // [K, 1, S, S]
  const int64_t s = padded.size(-1);

  // Enlarge the boxes as the padding enlarged the masks, then truncate (towards zero) to pixels.
  const double scale = static_cast<double>(m + 2 * padding) / m;
  const auto half_w = (boxes.select(1, 2) - boxes.select(1, 0)) * 0.5 * scale;
  const auto half_h = (boxes.select(1, 3) - boxes.select(1, 1)) * 0.5 * scale;
  const auto cx = (boxes.select(1, 2) + boxes.select(1, 0)) * 0.5;
  const auto cy = (boxes.select(1, 3) + boxes.select(1, 1)) * 0.5;
  const auto pixel_boxes =
      torch::stack({cx - half_w, cy - half_h, cx + half_w, cy + half_h}, 1).to(torch::kLong).cpu();
  const auto b = pixel_boxes.accessor<int64_t, 2>();

  auto out = torch::zeros({masks.size(0), 1, height, width}, masks.options());
  const auto float_options = masks.options();
  for (int64_t k = 0; k < masks.size(0); ++k) {
    const int64_t x0 = b[k][0], y0 = b[k][1], x1 = b[k][2], y1 = b[k][3];
    const int64_t box_w = std::max<int64_t>(x1 - x0 + 1, 1);
    const int64_t box_h = std::max<int64_t>(y1 - y0 + 1, 1);
    // Visible part of the box, in image pixels.
    const int64_t xa = std::max<int64_t>(x0, 0), xb = std::min(x1 + 1, width);
    const int64_t ya = std::max<int64_t>(y0, 0), yb = std::min(y1 + 1, height);
    if (xa >= xb || ya >= yb) continue;
    const auto cols = resize_taps(s, box_w, xa - x0, xb - x0, float_options);  // [w_vis]
    const auto rows = resize_taps(s, box_h, ya - y0, yb - y0, float_options);  // [h_vis]
    using torch::indexing::Slice;
    out.index({k, 0, Slice(ya, yb), Slice(xa, xb)}).copy_(bilinear(padded[k][0], rows, cols));
  }
  return out;
}

torch::Tensor paste_masks_aligned(const torch::Tensor& masks, const torch::Tensor& boxes, int64_t height,
                                  int64_t width) {
  check_paste_inputs(masks, boxes);
  const int64_t m = masks.size(-1);
  const auto padded = torch::constant_pad_nd(masks, {1, 1, 1, 1});  // [K, 1, M + 2, M + 2]
  const auto b = boxes.to(torch::kDouble).cpu();
  const auto box = b.accessor<double, 2>();
  auto out = torch::zeros({masks.size(0), 1, height, width}, masks.options());
  // One axis of one box: the pixels [begin, end) whose reads can be non-zero, and their taps.
  struct Axis {
    int64_t begin, end;
    LinearTaps taps;
  };
  const auto axis = [&](double lo, double hi, int64_t pixels) {
    const double cell = std::max(hi - lo, 1.0) / m;  // as the targets' RoIAlign: sides of at least 1 px
    // Reads are non-zero for u in (-1, M), i.e. pixels in (lo - cell / 2, lo + (M + 0.5) cell).
    const auto begin = std::clamp<int64_t>(static_cast<int64_t>(std::floor(lo - 0.5 * cell)), 0, pixels);
    const auto end = std::clamp<int64_t>(static_cast<int64_t>(std::ceil(lo + (m + 0.5) * cell)) + 1, 0, pixels);
    const auto x = torch::arange(begin, std::max(begin, end), masks.options().dtype(torch::kDouble));
    const auto src = (x - lo) / cell + 0.5;  // u + 1: the padded mask's index
    return Axis{begin, end, taps_at(src.to(masks.scalar_type()), m + 2)};
  };
  for (int64_t k = 0; k < masks.size(0); ++k) {
    const Axis cols = axis(box[k][0], box[k][2], width), rows = axis(box[k][1], box[k][3], height);
    if (cols.begin >= cols.end || rows.begin >= rows.end) continue;
    using torch::indexing::Slice;
    out.index({k, 0, Slice(rows.begin, rows.end), Slice(cols.begin, cols.end)})
        .copy_(bilinear(padded[k][0], rows.taps, cols.taps));
  }
  return out;
}

}  // namespace instseg
