#include "instseg/modeling/roi_heads/paste_masks.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>

#include "modeling/named_enum.h"

namespace instseg {

namespace {
constexpr detail::NameTable<MaskPaste, 2> kMaskPasteNames{{{"torchvision", MaskPaste::kTorchvision},
                                                           {"aligned", MaskPaste::kAligned}}};
}  // namespace

std::string to_string(MaskPaste paste) { return detail::name_of(kMaskPasteNames, paste); }

MaskPaste mask_paste_named(const std::string& name, const std::string& key) {
  return detail::value_named(kMaskPasteNames, name, key);
}

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

// Bilinear read of mask [S, S] at every (row, column) pair of the taps: [rows, cols]. One pass in
// plain loops (a region is up to the whole image, and gathers through index tensors cost several
// times the arithmetic), in the order of operations of the tensor expression
//   rows.weight0 * (m[r0, c0] * cols.weight0 + m[r0, c1] * cols.weight1) + rows.weight1 * (...r1...),
// each product and sum rounded to the mask's type, so the values are that expression's.
template <typename T>
void bilinear_kernel(const torch::Tensor& mask, const LinearTaps& rows, const LinearTaps& cols, torch::Tensor& out) {
  const int64_t h = out.size(0), w = out.size(1), stride = mask.stride(0);
  const T* m = mask.data_ptr<T>();
  const int64_t* r0 = rows.index0.data_ptr<int64_t>();
  const int64_t* r1 = rows.index1.data_ptr<int64_t>();
  const T* rw0 = rows.weight0.data_ptr<T>();
  const T* rw1 = rows.weight1.data_ptr<T>();
  const int64_t* c0 = cols.index0.data_ptr<int64_t>();
  const int64_t* c1 = cols.index1.data_ptr<int64_t>();
  const T* cw0 = cols.weight0.data_ptr<T>();
  const T* cw1 = cols.weight1.data_ptr<T>();
  T* o = out.data_ptr<T>();
  for (int64_t y = 0; y < h; ++y) {
    const T* top = m + r0[y] * stride;
    const T* bottom = m + r1[y] * stride;
    const T a = rw0[y], b = rw1[y];
    for (int64_t x = 0; x < w; ++x) {
      const T t = static_cast<T>(top[c0[x]] * cw0[x]) + static_cast<T>(top[c1[x]] * cw1[x]);
      const T u = static_cast<T>(bottom[c0[x]] * cw0[x]) + static_cast<T>(bottom[c1[x]] * cw1[x]);
      o[y * w + x] = static_cast<T>(a * t) + static_cast<T>(b * u);
    }
  }
}

torch::Tensor bilinear(const torch::Tensor& mask, const LinearTaps& rows, const LinearTaps& cols) {
  const auto m = mask.contiguous();
  auto out = torch::empty({rows.index0.size(0), cols.index0.size(0)}, m.options());
  AT_DISPATCH_FLOATING_TYPES(m.scalar_type(), "paste_bilinear", [&] { bilinear_kernel<scalar_t>(m, rows, cols, out); });
  return out;
}

void check_paste_inputs(const torch::Tensor& masks, const torch::Tensor& boxes) {
  TORCH_CHECK(masks.dim() == 4 && masks.size(1) == 1 && masks.size(2) == masks.size(3),
              "paste_masks_in_image: masks must be [K, 1, M, M], got ", masks.sizes());
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(1) == 4 && boxes.size(0) == masks.size(0),
              "paste_masks_in_image: boxes must be [", masks.size(0), ", 4], got ", boxes.sizes());
}

}  // namespace

MaskPaster::MaskPaster(const torch::Tensor& masks, const torch::Tensor& boxes, int64_t height, int64_t width,
                       MaskPaste paste, int64_t padding)
    : paste_(paste), count_(masks.size(0)), height_(height), width_(width), mask_size_(masks.size(-1)) {
  check_paste_inputs(masks, boxes);
  if (paste_ == MaskPaste::kAligned) padding = 1;  // zero beyond the edge cells
  padded_ = torch::constant_pad_nd(masks, {padding, padding, padding, padding});  // [K, 1, S, S]
  if (paste_ == MaskPaste::kAligned) {
    boxes_cpu_ = boxes.to(torch::kDouble).cpu();
    return;
  }
  // Enlarge the boxes as the padding enlarged the masks, then truncate (towards zero) to pixels.
  const int64_t m = mask_size_;
  const double scale = static_cast<double>(m + 2 * padding) / m;
  const auto half_w = (boxes.select(1, 2) - boxes.select(1, 0)) * 0.5 * scale;
  const auto half_h = (boxes.select(1, 3) - boxes.select(1, 1)) * 0.5 * scale;
  const auto cx = (boxes.select(1, 2) + boxes.select(1, 0)) * 0.5;
  const auto cy = (boxes.select(1, 3) + boxes.select(1, 1)) * 0.5;
  boxes_cpu_ = torch::stack({cx - half_w, cy - half_h, cx + half_w, cy + half_h}, 1).to(torch::kLong).cpu();
}

MaskRegion MaskPaster::paste(int64_t k) const {
  TORCH_CHECK(k >= 0 && k < count_, "MaskPaster::paste: mask ", k, " of ", count_);
  const auto mask = padded_[k][0];  // [S, S]
  const auto nothing = [&] { return MaskRegion{0, 0, torch::zeros({0, 0}, padded_.options())}; };
  if (paste_ == MaskPaste::kTorchvision) {
    const int64_t s = padded_.size(-1);
    const auto b = boxes_cpu_.accessor<int64_t, 2>();
    const int64_t x0 = b[k][0], y0 = b[k][1], x1 = b[k][2], y1 = b[k][3];
    const int64_t box_w = std::max<int64_t>(x1 - x0 + 1, 1);
    const int64_t box_h = std::max<int64_t>(y1 - y0 + 1, 1);
    // Visible part of the box, in image pixels.
    const int64_t xa = std::max<int64_t>(x0, 0), xb = std::min(x1 + 1, width_);
    const int64_t ya = std::max<int64_t>(y0, 0), yb = std::min(y1 + 1, height_);
    if (xa >= xb || ya >= yb) return nothing();
    const auto cols = resize_taps(s, box_w, xa - x0, xb - x0, padded_.options());  // [w_vis]
    const auto rows = resize_taps(s, box_h, ya - y0, yb - y0, padded_.options());  // [h_vis]
    return {xa, ya, bilinear(mask, rows, cols)};
  }
  const int64_t m = mask_size_;
  const auto box = boxes_cpu_.accessor<double, 2>();
  // One axis of the box: the pixels [begin, end) whose reads can be non-zero, and their taps.
  struct Axis {
    int64_t begin, end;
    LinearTaps taps;
  };
  const auto axis = [&](double lo, double hi, int64_t pixels) {
    const double cell = std::max(hi - lo, 1.0) / m;  // as the targets' RoIAlign: sides of at least 1 px
    // Reads are non-zero for u in (-1, M), i.e. pixels in (lo - cell / 2, lo + (M + 0.5) cell).
    const auto begin = std::clamp<int64_t>(static_cast<int64_t>(std::floor(lo - 0.5 * cell)), 0, pixels);
    const auto end = std::clamp<int64_t>(static_cast<int64_t>(std::ceil(lo + (m + 0.5) * cell)) + 1, 0, pixels);
    const auto x = torch::arange(begin, std::max(begin, end), padded_.options().dtype(torch::kDouble));
    const auto src = (x - lo) / cell + 0.5;  // u + 1: the padded mask's index
    return Axis{begin, end, taps_at(src.to(padded_.scalar_type()), m + 2)};
  };
  const Axis cols = axis(box[k][0], box[k][2], width_), rows = axis(box[k][1], box[k][3], height_);
  if (cols.begin >= cols.end || rows.begin >= rows.end) return nothing();
  return {cols.begin, rows.begin, bilinear(mask, rows.taps, cols.taps)};
}

namespace {

// Every mask of a paster into one [K, 1, height, width] tensor.
torch::Tensor paste_all(const MaskPaster& paster, const torch::TensorOptions& options) {
  auto out = torch::zeros({paster.size(), 1, paster.height(), paster.width()}, options);
  // Each mask writes its own slice: the masks run on all cores.
  at::parallel_for(0, paster.size(), 1, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      const MaskRegion region = paster.paste(k);
      if (region.probs.numel() == 0) continue;
      using torch::indexing::Slice;
      out.index({k, 0, Slice(region.y, region.y + region.probs.size(0)), Slice(region.x, region.x + region.probs.size(1))})
          .copy_(region.probs);
    }
  });
  return out;
}

}  // namespace

torch::Tensor paste_masks_in_image(const torch::Tensor& masks, const torch::Tensor& boxes,
                                   int64_t height, int64_t width, int64_t padding) {
  return paste_all(MaskPaster(masks, boxes, height, width, MaskPaste::kTorchvision, padding), masks.options());
}

torch::Tensor paste_masks_aligned(const torch::Tensor& masks, const torch::Tensor& boxes, int64_t height,
                                  int64_t width) {
  return paste_all(MaskPaster(masks, boxes, height, width, MaskPaste::kAligned), masks.options());
}

}  // namespace instseg
