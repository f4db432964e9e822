#pragma once
// Mixed precision on the CPU. Inside a Bf16AutocastScope LibTorch's autocast runs convolutions and
// matrix products in bfloat16 (oneDNN accumulates in fp32); weights, gradients as applied, losses
// and the optimizer stay fp32. The model's heads hand their outputs back in their parameters'
// precision, so box decoding, losses and RoIAlign never see bfloat16.

namespace instseg::ops {

// True where the CPU has bfloat16 arithmetic (AVX512-BF16): there a ResNet-18 forward and backward
// takes 0.5-0.6x its fp32 time; elsewhere oneDNN emulates it, slower than fp32.
bool cpu_has_native_bf16();

// Enables CPU autocast to bfloat16 for the scope's lifetime (this thread only) when `enabled`;
// restores the previous state and drops autocast's cached weight casts on exit. Wrap the forward
// pass only: backward follows the graph's dtypes by itself.
class Bf16AutocastScope {
 public:
  explicit Bf16AutocastScope(bool enabled);
  ~Bf16AutocastScope();
  Bf16AutocastScope(const Bf16AutocastScope&) = delete;
  Bf16AutocastScope& operator=(const Bf16AutocastScope&) = delete;

 private:
  bool enabled_;
  bool was_enabled_ = false;
  int previous_dtype_ = 0;  // an at::ScalarType, as int to keep ATen out of this header
};

}  // namespace instseg::ops
