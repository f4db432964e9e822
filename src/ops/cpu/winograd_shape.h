#pragma once
// The convolutions oneDNN's fp32 Winograd kernel (F(4x4, 3x3), AVX-512) takes: 3x3, stride 1,
// padding 1, no dilation or groups, channels in whole 16-lane blocks. One description for both
// users: conv2d's training path (ops/conv2d.cpp) and predict's fused convolutions
// (ops/cpu/onednn_layers.cpp), which add their own conditions (dtype, channel limits).
#include <cstdint>

namespace instseg::ops::cpu {

inline bool winograd_shape_fits(int64_t kernel_h, int64_t kernel_w, int64_t stride, int64_t padding,
                                int64_t dilation, int64_t groups, int64_t in_channels, int64_t out_channels) {
  return kernel_h == 3 && kernel_w == 3 && stride == 1 && padding == 1 && dilation == 1 && groups == 1 &&
         in_channels % 16 == 0 && out_channels % 16 == 0;
}

}  // namespace instseg::ops::cpu
