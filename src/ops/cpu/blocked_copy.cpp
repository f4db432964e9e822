#include "ops/cpu/blocked_copy.h"

#include <ATen/Parallel.h>

#include <cstring>

namespace instseg::ops::cpu {
namespace {

constexpr int64_t kBlock = 16;
constexpr int64_t kRun = kBlock * static_cast<int64_t>(sizeof(float));
// Pixels per task: enough that a task's copies outweigh scheduling it.
constexpr int64_t kGrain = 2048;

}  // namespace

void channels_last_to_blocked16(const float* src, float* dst, int64_t images, int64_t pixels, int64_t channels) {
  const int64_t blocks = channels / kBlock;
  at::parallel_for(0, images * pixels, kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t image = i / pixels, pixel = i % pixels;
      const float* from = src + i * channels;
      float* to = dst + (image * blocks * pixels + pixel) * kBlock;
      for (int64_t b = 0; b < blocks; ++b) std::memcpy(to + b * pixels * kBlock, from + b * kBlock, kRun);
    }
  });
}

void blocked16_to_channels_last(const float* src, float* dst, int64_t images, int64_t pixels, int64_t channels) {
  const int64_t blocks = channels / kBlock;
  at::parallel_for(0, images * pixels, kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t image = i / pixels, pixel = i % pixels;
      const float* from = src + (image * blocks * pixels + pixel) * kBlock;
      float* to = dst + i * channels;
      for (int64_t b = 0; b < blocks; ++b) std::memcpy(to + b * kBlock, from + b * pixels * kBlock, kRun);
    }
  });
}

}  // namespace instseg::ops::cpu
