#pragma once
// Copies between channels-last float activations and oneDNN's 16-channel blocked layout
// (nChw16c: [N][C/16][H][W][16]), the layout its Winograd kernels read and write. Each pixel's
// channels are 64-byte runs, one per block: whole cache lines, copied on all cores in ranges of
// pixels, reading or writing the channels-last side in order. Faster than oneDNN's generic
// reorder on the Winograd shapes (docs/benchmarks.md, "Run 5"), with the same bits.
#include <cstdint>

namespace instseg::ops::cpu {

// `images` images of `pixels` pixels each, `channels` a multiple of 16; buffers do not overlap.
void channels_last_to_blocked16(const float* src, float* dst, int64_t images, int64_t pixels, int64_t channels);
void blocked16_to_channels_last(const float* src, float* dst, int64_t images, int64_t pixels, int64_t channels);

}  // namespace instseg::ops::cpu
