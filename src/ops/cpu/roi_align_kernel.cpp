// RoIAlign CPU kernel with torchvision's sampling rules, written so that float results equal
// torchvision's bit for bit (same arithmetic in the same order), but parallel:
//  - forward over RoIs (each RoI writes its own output slice);
//  - backward over channels (RoIs overlap in grad_input, channels never do), which also keeps
//    torchvision's per-pixel summation order (RoI, bin, sample).
#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "ops/cpu/kernels.h"

namespace instseg::ops::cpu {
namespace {

// Where one RoI lies on the feature map and how densely its bins are sampled.
template <typename T>
struct RoiGeometry {
  int64_t batch_index;
  T start_h, start_w;    // feature-map pixels
  T bin_h, bin_w;        // bin size, feature-map pixels
  int64_t grid_h, grid_w;  // samples per bin side
  T count;               // samples per bin, the averaging divisor (>= 1)
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

// One bilinear sample: four pixel offsets into an H*W plane and their weights.
template <typename T>
struct Sample {
  int64_t p1, p2, p3, p4;
  T w1, w2, w3, w4;
  bool valid;  // false outside [-1, H] x [-1, W]: contributes nothing
};

// Fills `samples` for every (ph, pw, iy, ix) of the RoI, in that order (row-major).
template <typename T>
void compute_samples(const RoiGeometry<T>& g, const RoiAlignOptions& o, int64_t height,
                     int64_t width, std::vector<Sample<T>>& samples) {
  samples.resize(o.pooled_height * o.pooled_width * g.grid_h * g.grid_w);
  size_t k = 0;
  for (int64_t ph = 0; ph < o.pooled_height; ++ph) {
    for (int64_t pw = 0; pw < o.pooled_width; ++pw) {
      for (int64_t iy = 0; iy < g.grid_h; ++iy) {
        const T yy = g.start_h + ph * g.bin_h +
                     static_cast<T>(iy + .5f) * g.bin_h / static_cast<T>(g.grid_h);
        for (int64_t ix = 0; ix < g.grid_w; ++ix, ++k) {
          const T xx = g.start_w + pw * g.bin_w +
                       static_cast<T>(ix + .5f) * g.bin_w / static_cast<T>(g.grid_w);
          Sample<T>& s = samples[k];
          // Written as !(inside) so NaN coordinates count as outside.
          if (!(yy >= -1.0 && yy <= height && xx >= -1.0 && xx <= width)) {
            s = Sample<T>{0, 0, 0, 0, 0, 0, 0, 0, false};
            continue;
          }
          T y = yy <= 0 ? T(0) : yy;  // samples in [-1, 0] read the first row/column
          T x = xx <= 0 ? T(0) : xx;
          int64_t y_low = static_cast<int64_t>(y), x_low = static_cast<int64_t>(x);
          int64_t y_high, x_high;
          if (y_low >= height - 1) {  // samples in [H-1, H] read the last row
            y_high = y_low = height - 1;
            y = static_cast<T>(y_low);
          } else {
            y_high = y_low + 1;
          }
          if (x_low >= width - 1) {
            x_high = x_low = width - 1;
            x = static_cast<T>(x_low);
          } else {
            x_high = x_low + 1;
          }
          const T ly = y - y_low, lx = x - x_low;
          const T hy = T(1) - ly, hx = T(1) - lx;
          s = Sample<T>{y_low * width + x_low, y_low * width + x_high, y_high * width + x_low,
                        y_high * width + x_high, hy * hx, hy * lx, ly * hx, ly * lx, true};
        }
      }
    }
  }
}

template <typename T>
void forward_impl(const torch::Tensor& input, const torch::Tensor& rois,
                  const RoiAlignOptions& o, torch::Tensor& output) {
  const int64_t channels = input.size(1), height = input.size(2), width = input.size(3);
  const int64_t bins = o.pooled_height * o.pooled_width;
  const T* in = input.data_ptr<T>();
  const T* roi_data = rois.data_ptr<T>();
  T* out = output.data_ptr<T>();
  at::parallel_for(0, rois.size(0), 1, [&](int64_t begin, int64_t end) {
    std::vector<Sample<T>> samples;
    for (int64_t n = begin; n < end; ++n) {
      const RoiGeometry<T> g = roi_geometry(roi_data + n * 5, o);
      compute_samples(g, o, height, width, samples);
      const int64_t per_bin = g.grid_h * g.grid_w;
      for (int64_t c = 0; c < channels; ++c) {
        const T* plane = in + (g.batch_index * channels + c) * height * width;
        T* out_c = out + (n * channels + c) * bins;
        const Sample<T>* s = samples.data();
        for (int64_t b = 0; b < bins; ++b) {
          T sum = 0;
          for (int64_t k = 0; k < per_bin; ++k, ++s) {
            if (s->valid) {
              sum += s->w1 * plane[s->p1] + s->w2 * plane[s->p2] + s->w3 * plane[s->p3] +
                     s->w4 * plane[s->p4];
            }
          }
          out_c[b] = sum / g.count;
        }
      }
    }
  });
}

template <typename T>
void backward_impl(const torch::Tensor& grad_output, const torch::Tensor& rois,
                   const RoiAlignOptions& o, torch::Tensor& grad_input) {
  const int64_t channels = grad_input.size(1), height = grad_input.size(2),
                width = grad_input.size(3);
  const int64_t bins = o.pooled_height * o.pooled_width;
  const int64_t num_rois = rois.size(0);
  const T* go = grad_output.data_ptr<T>();
  const T* roi_data = rois.data_ptr<T>();
  T* gi = grad_input.data_ptr<T>();
  at::parallel_for(0, channels, 1, [&](int64_t c_begin, int64_t c_end) {
    std::vector<Sample<T>> samples;
    for (int64_t n = 0; n < num_rois; ++n) {
      const RoiGeometry<T> g = roi_geometry(roi_data + n * 5, o);
      compute_samples(g, o, height, width, samples);
      const int64_t per_bin = g.grid_h * g.grid_w;
      for (int64_t c = c_begin; c < c_end; ++c) {
        T* plane = gi + (g.batch_index * channels + c) * height * width;
        const T* go_c = go + (n * channels + c) * bins;
        const Sample<T>* s = samples.data();
        for (int64_t b = 0; b < bins; ++b) {
          const T grad_bin = go_c[b];
          for (int64_t k = 0; k < per_bin; ++k, ++s) {
            if (!s->valid) continue;
            plane[s->p1] += grad_bin * s->w1 / g.count;
            plane[s->p2] += grad_bin * s->w2 / g.count;
            plane[s->p3] += grad_bin * s->w3 / g.count;
            plane[s->p4] += grad_bin * s->w4 / g.count;
          }
        }
      }
    }
  });
}

}  // namespace

torch::Tensor roi_align_forward(const torch::Tensor& input, const torch::Tensor& rois,
                                const RoiAlignOptions& options) {
  auto output = torch::zeros({rois.size(0), input.size(1), options.pooled_height,
                              options.pooled_width},
                             input.options());
  if (output.numel() == 0) return output;
  const auto input_c = input.contiguous();
  const auto rois_c = rois.contiguous();
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "roi_align_forward", [&] {
    forward_impl<scalar_t>(input_c, rois_c, options, output);
  });
  return output;
}

torch::Tensor roi_align_backward(const torch::Tensor& grad_output, const torch::Tensor& rois,
                                 const RoiAlignOptions& options, at::IntArrayRef input_sizes) {
  auto grad_input = torch::zeros(input_sizes, grad_output.options());
  if (grad_output.numel() == 0 || grad_input.numel() == 0) return grad_input;
  const auto grad_c = grad_output.contiguous();
  const auto rois_c = rois.contiguous();
  AT_DISPATCH_FLOATING_TYPES(grad_output.scalar_type(), "roi_align_backward", [&] {
    backward_impl<scalar_t>(grad_c, rois_c, options, grad_input);
  });
  return grad_input;
}

}  // namespace instseg::ops::cpu
