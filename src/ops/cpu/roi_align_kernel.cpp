// RoIAlign CPU kernel with torchvision's sampling rules (sample positions computed with the same
// arithmetic), summed separably (see Span) and parallel:
//  - forward over RoIs (each RoI writes its own output slice);
//  - backward over channels (RoIs overlap in grad_input, channels never do), so results do not
//    depend on the thread count; channels innermost there, so that the scatter vectorises.
#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "ops/cpu/kernels.h"

namespace instseg::ops::cpu {
namespace {

// Where one RoI lies on the feature map and how densely its bins are sampled.
template <typename T>
struct RoiGeometry {
  int64_t batch_index;
  T start_h, start_w;      // feature-map pixels
  T bin_h, bin_w;          // bin size, feature-map pixels
  int64_t grid_h, grid_w;  // samples per bin side
  T count;                 // samples per bin, the averaging divisor (>= 1)
};

template <typename T>
RoiGeometry<T> roi_geometry(const T* roi, const RoiAlignOptions& o) {
  const T scale = static_cast<T>(o.spatial_scale);
  // aligned=true: pixel centres sit at +0.5, so the continuous box is shifted by half a pixel.
  const T offset = o.aligned ? T(0.5) : T(0);
  RoiGeometry<T> g;
  g.batch_index = static_cast<int64_t>(roi[0]);
  g.start_w = roi[1] * scale - offset;
  g.start_h = roi[2] * scale - offset;
  T width = roi[3] * scale - offset - g.start_w;
  T height = roi[4] * scale - offset - g.start_h;
  if (!o.aligned) {  // legacy behaviour: degenerate boxes are treated as 1x1
    width = std::max(width, T(1));
    height = std::max(height, T(1));
  }
  g.bin_h = height / static_cast<T>(o.pooled_height);
  g.bin_w = width / static_cast<T>(o.pooled_width);
  g.grid_h = o.sampling_ratio > 0 ? o.sampling_ratio
                                  : static_cast<int64_t>(std::ceil(height / o.pooled_height));
  g.grid_w = o.sampling_ratio > 0 ? o.sampling_ratio
                                  : static_cast<int64_t>(std::ceil(width / o.pooled_width));
  // A negative-size aligned box gives an empty grid: its bins output zeros.
  g.grid_h = std::max<int64_t>(g.grid_h, 0);
  g.grid_w = std::max<int64_t>(g.grid_w, 0);
  g.count = static_cast<T>(std::max<int64_t>(g.grid_h * g.grid_w, 1));
  return g;
}

// Bilinear weights are separable and the sample grid is regular, so a bin's average is
//   sum_r sum_c Wy[r] * Wx[c] * I[r][c] / count,
// with Wy[r] summing the y-weights every sample row of the bin puts on feature row r (Wx alike).
// A bin thus reads each pixel of its row/column span once, instead of 4 reads per sample (with
// sampling 2 and ~2 px bins, 9 reads instead of 16), along contiguous rows.
struct Span {
  int64_t first = 0;   // first feature row (or column) touched
  int64_t length = 0;  // rows (columns) touched; 0 when every sample lies outside the map
  int64_t offset = 0;  // where its weights start in the RoI's weight array
};

// Spans and weights for one axis of one RoI: pooled bins along an axis of `size` pixels.
// Samples outside [-1, size] get no weight (they still count in the average, as torchvision).
template <typename T>
void axis_weights(T start, T bin, int64_t grid, int64_t pooled, int64_t size,
                  std::vector<Span>& spans, std::vector<T>& weights) {
  spans.assign(pooled, Span{});
  weights.clear();
  for (int64_t p = 0; p < pooled; ++p) {
    Span& span = spans[p];
    span.offset = static_cast<int64_t>(weights.size());
    for (int64_t i = 0; i < grid; ++i) {
      T v = start + p * bin + static_cast<T>(i + .5f) * bin / static_cast<T>(grid);
      if (!(v >= -1.0 && v <= size)) continue;  // written so that NaN counts as outside
      if (v <= 0) v = 0;                        // [-1, 0] reads the first pixel
      int64_t low = static_cast<int64_t>(v), high;
      if (low >= size - 1) {  // [size - 1, size] reads the last pixel
        high = low = size - 1;
        v = static_cast<T>(low);
      } else {
        high = low + 1;
      }
      const T l = v - low, h = T(1) - l;
      if (span.length == 0) {
        span.first = low;
      } else if (low < span.first) {  // samples come in increasing order unless the bin is negative
        weights.insert(weights.begin() + span.offset, span.first - low, T(0));
        span.length += span.first - low;
        span.first = low;
      }
      const int64_t needed = high - span.first + 1;
      if (needed > span.length) {
        weights.resize(span.offset + needed, T(0));
        span.length = needed;
      }
      weights[span.offset + low - span.first] += h;
      weights[span.offset + high - span.first] += l;
    }
  }
}

// Per-RoI sampling layout shared by all channels.
template <typename T>
struct RoiLayout {
  std::vector<Span> rows, cols;
  std::vector<T> row_weights, col_weights;
  void build(const RoiGeometry<T>& g, const RoiAlignOptions& o, int64_t height, int64_t width) {
    axis_weights(g.start_h, g.bin_h, g.grid_h, o.pooled_height, height, rows, row_weights);
    axis_weights(g.start_w, g.bin_w, g.grid_w, o.pooled_width, width, cols, col_weights);
  }
};

template <typename T>
void forward_impl(const torch::Tensor& input, const torch::Tensor& rois, const RoiAlignOptions& o,
                  torch::Tensor& output) {
  const int64_t channels = input.size(1), height = input.size(2), width = input.size(3);
  const int64_t bins = o.pooled_height * o.pooled_width;
  const T* in = input.data_ptr<T>();
  const T* roi_data = rois.data_ptr<T>();
  T* out = output.data_ptr<T>();
  at::parallel_for(0, rois.size(0), 1, [&](int64_t begin, int64_t end) {
    RoiLayout<T> layout;
    for (int64_t n = begin; n < end; ++n) {
      const RoiGeometry<T> g = roi_geometry(roi_data + n * 5, o);
      layout.build(g, o, height, width);
      for (int64_t c = 0; c < channels; ++c) {
        const T* plane = in + (g.batch_index * channels + c) * height * width;
        T* out_c = out + (n * channels + c) * bins;
        for (int64_t ph = 0; ph < o.pooled_height; ++ph) {
          const Span& ry = layout.rows[ph];
          const T* wy = layout.row_weights.data() + ry.offset;
          for (int64_t pw = 0; pw < o.pooled_width; ++pw) {
            const Span& cx = layout.cols[pw];
            const T* wx = layout.col_weights.data() + cx.offset;
            T sum = 0;
            for (int64_t r = 0; r < ry.length; ++r) {
              const T* row = plane + (ry.first + r) * width + cx.first;
              T row_sum = 0;
              for (int64_t k = 0; k < cx.length; ++k) row_sum += wx[k] * row[k];
              sum += wy[r] * row_sum;
            }
            out_c[ph * o.pooled_width + pw] = sum / g.count;
          }
        }
      }
    }
  });
}

// One output bin of the channels-last forward: within each row of the span the pixels weighted by
// wx, the rows weighted by wy, divided by count. Each step is a multiply-add over a run of
// contiguous channels.
template <typename T>
inline __attribute__((always_inline)) void pool_bin(const T* image, int64_t width, int64_t channels, const Span& ry,
                                                    const T* wy, const Span& cx, const T* wx, T count,
                                                    T* __restrict partial, T* __restrict total, T* __restrict bin) {
  std::fill(total, total + channels, T(0));
  for (int64_t r = 0; r < ry.length; ++r) {
    std::fill(partial, partial + channels, T(0));
    for (int64_t k = 0; k < cx.length; ++k) {
      const T* __restrict pixel = image + ((ry.first + r) * width + cx.first + k) * channels;
      const T weight = wx[k];
      for (int64_t c = 0; c < channels; ++c) partial[c] += weight * pixel[c];
    }
    const T weight = wy[r];
    for (int64_t c = 0; c < channels; ++c) total[c] += weight * partial[c];
  }
  for (int64_t c = 0; c < channels; ++c) bin[c] = total[c] / count;
}

// The float bin also built for AVX2 and AVX-512 (the library otherwise targets baseline x86-64,
// 4-lane SSE), chosen once by the loader for the CPU it runs on: the same arithmetic in the same
// order per channel, so the results do not depend on the version.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
void pool_bin_float(const float* image, int64_t width, int64_t channels, const Span& ry, const float* wy,
                    const Span& cx, const float* wx, float count, float* partial, float* total, float* bin) {
  pool_bin<float>(image, width, channels, ry, wy, cx, wx, count, partial, total, bin);
}

// The forward on channels-last features ([N, H, W, C] in, [K, PH, PW, C] out), as predict's fused
// path holds them: the same sums in the same order as forward_impl, each over a run of
// contiguous channels, so it vectorises and gives forward_impl's values.
template <typename T>
void forward_channels_last_impl(const torch::Tensor& input, const torch::Tensor& rois, const RoiAlignOptions& o,
                                torch::Tensor& output) {
  const int64_t channels = input.size(1), height = input.size(2), width = input.size(3);
  const T* in = input.data_ptr<T>();
  const T* roi_data = rois.data_ptr<T>();
  T* out = output.data_ptr<T>();
  at::parallel_for(0, rois.size(0), 1, [&](int64_t begin, int64_t end) {
    RoiLayout<T> layout;
    std::vector<T> row_sum(channels), sum(channels);
    for (int64_t n = begin; n < end; ++n) {
      const RoiGeometry<T> g = roi_geometry(roi_data + n * 5, o);
      layout.build(g, o, height, width);
      const T* image = in + g.batch_index * height * width * channels;
      for (int64_t ph = 0; ph < o.pooled_height; ++ph) {
        const Span& ry = layout.rows[ph];
        const T* wy = layout.row_weights.data() + ry.offset;
        for (int64_t pw = 0; pw < o.pooled_width; ++pw) {
          const Span& cx = layout.cols[pw];
          const T* wx = layout.col_weights.data() + cx.offset;
          T* bin = out + ((n * o.pooled_height + ph) * o.pooled_width + pw) * channels;
          if constexpr (std::is_same_v<T, float>) {
            pool_bin_float(image, width, channels, ry, wy, cx, wx, g.count, row_sum.data(), sum.data(), bin);
          } else {
            pool_bin<T>(image, width, channels, ry, wy, cx, wx, g.count, row_sum.data(), sum.data(), bin);
          }
        }
      }
    }
  });
}

// Channels innermost ([K, PH, PW, C] in, [N, H, W, C] out): each (bin, pixel) pair is one
// multiply-add over a run of contiguous channels, which vectorises, where the [N, C, H, W] walk
// did a few scalar ones per (bin, row) with scattered writes (4.3x faster on the demo's heads).
template <typename T>
void backward_impl(const torch::Tensor& grad_output_last, const torch::Tensor& rois,
                   const RoiAlignOptions& o, torch::Tensor& grad_input_last) {
  const int64_t height = grad_input_last.size(1), width = grad_input_last.size(2),
                channels = grad_input_last.size(3);
  const int64_t num_rois = rois.size(0);
  const T* go = grad_output_last.data_ptr<T>();
  const T* roi_data = rois.data_ptr<T>();
  T* gi = grad_input_last.data_ptr<T>();
  at::parallel_for(0, channels, 16, [&](int64_t c_begin, int64_t c_end) {
    const int64_t run = c_end - c_begin;
    RoiLayout<T> layout;
    for (int64_t n = 0; n < num_rois; ++n) {
      const RoiGeometry<T> g = roi_geometry(roi_data + n * 5, o);
      layout.build(g, o, height, width);
      T* image = gi + g.batch_index * height * width * channels + c_begin;
      for (int64_t ph = 0; ph < o.pooled_height; ++ph) {
        const Span& ry = layout.rows[ph];
        const T* wy = layout.row_weights.data() + ry.offset;
        for (int64_t pw = 0; pw < o.pooled_width; ++pw) {
          const Span& cx = layout.cols[pw];
          const T* wx = layout.col_weights.data() + cx.offset;
          const T* __restrict grad_bin = go + ((n * o.pooled_height + ph) * o.pooled_width + pw) * channels + c_begin;
          for (int64_t r = 0; r < ry.length; ++r) {
            const T row_weight = wy[r] / g.count;
            for (int64_t k = 0; k < cx.length; ++k) {
              const T weight = row_weight * wx[k];
              T* __restrict pixel = image + ((ry.first + r) * width + cx.first + k) * channels;
              for (int64_t c = 0; c < run; ++c) pixel[c] += weight * grad_bin[c];
            }
          }
        }
      }
    }
  });
}

}  // namespace

torch::Tensor roi_align_forward(const torch::Tensor& input, const torch::Tensor& rois,
                                const RoiAlignOptions& options) {
  const bool channels_last = input.is_contiguous(at::MemoryFormat::ChannelsLast) && !input.is_contiguous();
  // at::zeros drops a memory format; empty + zero_ keeps it.
  auto output = at::empty(
      {rois.size(0), input.size(1), options.pooled_height, options.pooled_width},
      input.options().memory_format(channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous));
  output.zero_();
  if (output.numel() == 0) return output;
  if (channels_last) {
    const auto rois_c = rois.contiguous();
    AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "roi_align_forward_channels_last",
                               [&] { forward_channels_last_impl<scalar_t>(input, rois_c, options, output); });
    return output;
  }
  const auto input_c = input.contiguous();
  const auto rois_c = rois.contiguous();
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "roi_align_forward",
                             [&] { forward_impl<scalar_t>(input_c, rois_c, options, output); });
  return output;
}

torch::Tensor roi_align_backward(const torch::Tensor& grad_output, const torch::Tensor& rois,
                                 const RoiAlignOptions& options, at::IntArrayRef input_sizes) {
  TORCH_CHECK(input_sizes.size() == 4, "roi_align_backward: input sizes must be [N, C, H, W]");
  const int64_t n = input_sizes[0], c = input_sizes[1], h = input_sizes[2], w = input_sizes[3];
  auto grad_input_last = torch::zeros({n, h, w, c}, grad_output.options());
  if (grad_output.numel() > 0 && grad_input_last.numel() > 0) {
    const auto grad_last = grad_output.permute({0, 2, 3, 1}).contiguous();  // [K, PH, PW, C]
    const auto rois_c = rois.contiguous();
    AT_DISPATCH_FLOATING_TYPES(grad_output.scalar_type(), "roi_align_backward",
                               [&] { backward_impl<scalar_t>(grad_last, rois_c, options, grad_input_last); });
  }
  // [N, C, H, W] with channels-last strides: no copy here; the consumer's kernels take either layout.
  return grad_input_last.permute({0, 3, 1, 2});
}

}  // namespace instseg::ops::cpu
