#pragma once
// Inference-only convolutions and fully-connected layers on oneDNN, for predict's fused path
// (modeling/mask_rcnn.h prepare_inference): weights reordered once into the layout oneDNN's
// kernels want, bias, ReLU and a residual add applied inside the kernel (no extra pass over the
// output), activations channels-last ([N, C, H, W] with NHWC strides) end to end. fp32 or bf16
// (bf16 weights and activations, fp32 accumulation; on CPUs without AVX512-BF16 oneDNN emulates
// it, slower than fp32). No gradients.
#include <ATen/core/Tensor.h>

#include <memory>
#include <string>

namespace instseg::ops {

// The arithmetic of predict's fused path. Names as --precision takes them.
enum class InferencePrecision {
  kFloat32,   // [fp32] results equal the modules' within float rounding (the parity tests)
  kBFloat16,  // [bf16] convolutions and inner products in bfloat16, the rest fp32
};
std::string to_string(InferencePrecision precision);
// Throws ConfigError naming `setting` (e.g. "predict: --precision") for an unknown name.
InferencePrecision inference_precision_named(const std::string& name, const std::string& setting);

struct FusedConvOptions {
  int64_t stride = 1;
  int64_t padding = 0;
  int64_t dilation = 1;
  bool relu = false;  // max(0, .) after bias (and after the residual add)
  InferencePrecision precision = InferencePrecision::kFloat32;
  // The output's dtype in bf16: bf16 (the next fused layer reads it as is) or fp32 (stages that
  // leave the fused path: FPN outputs, head logits). fp32 precision always outputs fp32.
  bool float_output = false;
  // fp32 3x3 stride-1 convolutions without a residual add through oneDNN's Winograd kernels where
  // the CPU has them (AVX-512): within a few 1e-6 of the output's magnitude of the direct kernel.
  bool winograd = true;
};

// A 2-d convolution with its bias (and, where the model had one, a norm layer folded in by the
// caller: weight * scale, bias = shift).
class FusedConv2d {
 public:
  FusedConv2d() = default;
  // weight [O, I, KH, KW], bias [O] or undefined (zeros); both fp32, copied.
  FusedConv2d(const at::Tensor& weight, const at::Tensor& bias, FusedConvOptions options);
  bool defined() const { return impl_ != nullptr; }
  // x [N, I, H, W] (any layout and dtype; converted to channels-last in the compute dtype when
  // needed) -> [N, O, H', W'] channels-last.
  at::Tensor forward(const at::Tensor& x) const;
  // As forward, plus `accumulate` ([N, O, H', W'], channels-last, the output's dtype) before the
  // ReLU: the result is written into `accumulate`'s memory, which is returned.
  at::Tensor forward_add(const at::Tensor& x, at::Tensor accumulate) const;
  int64_t out_channels() const;

 private:
  struct Impl;
  std::shared_ptr<const Impl> impl_;
};

// y = x W^T + b (+ ReLU): torch.nn.Linear's layout, weight [O, I], bias [O].
class FusedLinear {
 public:
  FusedLinear() = default;
  FusedLinear(const at::Tensor& weight, const at::Tensor& bias, bool relu, InferencePrecision precision,
              bool float_output);
  bool defined() const { return impl_ != nullptr; }
  // x [R, I] (any dtype, made contiguous) -> [R, O]
  at::Tensor forward(const at::Tensor& x) const;

 private:
  struct Impl;
  std::shared_ptr<const Impl> impl_;
};

}  // namespace instseg::ops
