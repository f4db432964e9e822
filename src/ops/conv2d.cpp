// ops/conv2d.h. The Winograd path is an autograd function over oneDNN primitives: the activations
// go into oneDNN's 16-channel blocked layout (the one its Winograd kernels read) and back; the
// forward's blocked input is what the backward-weights pass reads, so it is kept instead of x.
// oneDNN's primitive cache makes recreating a primitive of a shape seen before cheap.
#include "instseg/ops/conv2d.h"

#include <ATen/autocast_mode.h>
#include <torch/torch.h>

#include <oneapi/dnnl/dnnl.hpp>
#include <unordered_map>

#include "ops/cpu/blocked_copy.h"
#include "ops/cpu/winograd_shape.h"

namespace instseg::ops {
namespace {

using dnnl::memory;
using Tag = memory::format_tag;
using Dt = memory::data_type;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Every Winograd primitive is described by the same shapes; one struct builds the descriptors.
struct WinogradShape {
  int64_t n, c, h, w, o, padding;
  bool bias;

  memory::dims src() const { return {n, c, h, w}; }
  memory::dims dst() const { return {n, o, h + 2 * padding - 2, w + 2 * padding - 2}; }
  memory::desc blocked(const memory::dims& dims) const { return memory::desc(dims, Dt::f32, Tag::nChw16c); }
  memory::desc weights_any() const { return memory::desc({o, c, 3, 3}, Dt::f32, Tag::any); }
  memory::desc bias_desc() const { return bias ? memory::desc({o}, Dt::f32, Tag::x) : memory::desc(); }
  memory::dims strides() const { return {1, 1}; }
  memory::dims pads() const { return {padding, padding}; }

  dnnl::convolution_forward::primitive_desc forward(const dnnl::engine& engine) const {
    return dnnl::convolution_forward::primitive_desc(
        dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_winograd,
                                        blocked(src()), weights_any(), bias_desc(), blocked(dst()), strides(), pads(),
                                        pads()),
        engine);
  }
};

dnnl::engine cpu_engine() { return dnnl::engine(dnnl::engine::kind::cpu, 0); }

// NHWC strides (a [N, C, 1, 1] or C = 1 tensor is both: it counts as NCHW).
bool is_channels_last(const at::Tensor& t) {
  return t.is_contiguous(at::MemoryFormat::ChannelsLast) && !t.is_contiguous();
}

// A plain tensor's layout as oneDNN names it: NCHW, or NHWC when it is channels-last.
memory::desc plain_desc(const at::Tensor& t) {
  const auto tag = is_channels_last(t) ? Tag::nhwc : Tag::nchw;
  return memory::desc({t.size(0), t.size(1), t.size(2), t.size(3)}, Dt::f32, tag);
}

at::Tensor dense(const at::Tensor& t) {
  return t.is_contiguous() || t.is_contiguous(at::MemoryFormat::ChannelsLast) ? t
                                                                               : t.contiguous(at::MemoryFormat::ChannelsLast);
}

// Storage for a oneDNN memory of `desc`, as a flat float tensor autograd can keep.
at::Tensor storage_for(const memory::desc& desc) {
  return at::empty({static_cast<int64_t>(desc.get_size() / sizeof(float))}, at::kFloat);
}

// Copies `from` (a plain tensor) into a new blocked buffer of `desc` (nChw16c, dense); channels-last
// tensors by the cache-line copy (ops/cpu/blocked_copy.h), NCHW ones by oneDNN's reorder.
at::Tensor to_blocked(const at::Tensor& from, const memory::desc& desc, const dnnl::engine& engine, dnnl::stream& stream) {
  auto out = storage_for(desc);
  if (is_channels_last(from)) {
    cpu::channels_last_to_blocked16(from.data_ptr<float>(), out.data_ptr<float>(), from.size(0),
                                    from.size(2) * from.size(3), from.size(1));
    return out;
  }
  memory src(plain_desc(from), engine, from.data_ptr());
  memory dst(desc, engine, out.data_ptr());
  dnnl::reorder(src, dst).execute(stream, src, dst);
  return out;
}

// A new tensor shaped `like` (its layout: NCHW or NHWC) holding the blocked buffer `from`.
at::Tensor from_blocked(const at::Tensor& from, const memory::desc& desc, const at::Tensor& like,
                        const dnnl::engine& engine, dnnl::stream& stream) {
  auto out = at::empty_like(like);
  if (is_channels_last(out)) {
    cpu::blocked16_to_channels_last(from.data_ptr<float>(), out.data_ptr<float>(), out.size(0),
                                    out.size(2) * out.size(3), out.size(1));
    return out;
  }
  memory src(desc, engine, from.data_ptr());
  memory dst(plain_desc(out), engine, out.data_ptr());
  dnnl::reorder(src, dst).execute(stream, src, dst);
  return out;
}

at::Tensor weights_into(const at::Tensor& weight, const memory::desc& desc, const dnnl::engine& engine, dnnl::stream& stream) {
  auto out = storage_for(desc);
  const auto plain = dense(weight);  // OIHW, or OHWI for channels-last weights (the same tags)
  memory src(plain_desc(plain), engine, plain.data_ptr());
  memory dst(desc, engine, out.data_ptr());
  dnnl::reorder(src, dst).execute(stream, src, dst);
  return out;
}

class WinogradConvFunction : public torch::autograd::Function<WinogradConvFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x_in, const at::Tensor& weight,
                            const at::Tensor& bias, int64_t padding) {
    const auto x = dense(x_in);
    const WinogradShape shape{x.size(0), x.size(1), x.size(2), x.size(3), weight.size(0), padding, bias.numel() > 0};
    auto engine = cpu_engine();
    dnnl::stream stream(engine);
    const auto pd = shape.forward(engine);
    auto src = to_blocked(x, pd.src_desc(), engine, stream);
    auto wei = weights_into(weight, pd.weights_desc(), engine, stream);
    auto dst = storage_for(pd.dst_desc());
    std::unordered_map<int, memory> args{{DNNL_ARG_SRC, memory(pd.src_desc(), engine, src.data_ptr())},
                                         {DNNL_ARG_WEIGHTS, memory(pd.weights_desc(), engine, wei.data_ptr())},
                                         {DNNL_ARG_DST, memory(pd.dst_desc(), engine, dst.data_ptr())}};
    const auto b = bias.contiguous();
    if (shape.bias) args.emplace(DNNL_ARG_BIAS, memory(shape.bias_desc(), engine, b.data_ptr()));
    dnnl::convolution_forward(pd).execute(stream, args);
    const auto dst_dims = shape.dst();
    const auto like = at::empty({dst_dims[0], dst_dims[1], dst_dims[2], dst_dims[3]},
                                x.options().memory_format(x.is_contiguous() ? at::MemoryFormat::Contiguous
                                                                             : at::MemoryFormat::ChannelsLast));
    auto out = from_blocked(dst, pd.dst_desc(), like, engine, stream);
    stream.wait();
    ctx->save_for_backward({src, weight});
    ctx->saved_data["n"] = shape.n;
    ctx->saved_data["c"] = shape.c;
    ctx->saved_data["h"] = shape.h;
    ctx->saved_data["w"] = shape.w;
    ctx->saved_data["padding"] = padding;
    ctx->saved_data["bias"] = shape.bias;
    ctx->saved_data["channels_last"] = !x.is_contiguous();
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& src = saved[0];
    const auto& weight = saved[1];
    const WinogradShape shape{ctx->saved_data["n"].toInt(), ctx->saved_data["c"].toInt(), ctx->saved_data["h"].toInt(),
                              ctx->saved_data["w"].toInt(), weight.size(0), ctx->saved_data["padding"].toInt(),
                              ctx->saved_data["bias"].toBool()};
    const bool channels_last = ctx->saved_data["channels_last"].toBool();
    const auto format = channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
    const auto grad = grads[0].contiguous(format);
    auto engine = cpu_engine();
    dnnl::stream stream(engine);
    const auto fwd = shape.forward(engine);
    const auto diff_dst = to_blocked(grad, fwd.dst_desc(), engine, stream);
    at::Tensor grad_x, grad_w, grad_b;
    if (ctx->needs_input_grad(0)) {
      dnnl::convolution_backward_data::primitive_desc pd(
          dnnl::convolution_backward_data::desc(dnnl::algorithm::convolution_winograd, shape.blocked(shape.src()),
                                                shape.weights_any(), shape.blocked(shape.dst()), shape.strides(),
                                                shape.pads(), shape.pads()),
          engine, fwd);
      auto wei = weights_into(weight, pd.weights_desc(), engine, stream);
      auto diff_src = storage_for(pd.diff_src_desc());
      dnnl::convolution_backward_data(pd).execute(
          stream, {{DNNL_ARG_DIFF_DST, memory(pd.diff_dst_desc(), engine, diff_dst.data_ptr())},
                   {DNNL_ARG_WEIGHTS, memory(pd.weights_desc(), engine, wei.data_ptr())},
                   {DNNL_ARG_DIFF_SRC, memory(pd.diff_src_desc(), engine, diff_src.data_ptr())}});
      const auto like = at::empty({shape.n, shape.c, shape.h, shape.w}, grad.options().memory_format(format));
      grad_x = from_blocked(diff_src, pd.diff_src_desc(), like, engine, stream);
    }
    if (ctx->needs_input_grad(1) || (shape.bias && ctx->needs_input_grad(2))) {
      dnnl::convolution_backward_weights::primitive_desc pd(
          dnnl::convolution_backward_weights::desc(dnnl::algorithm::convolution_winograd, shape.blocked(shape.src()),
                                                   shape.weights_any(), shape.bias_desc(), shape.blocked(shape.dst()),
                                                   shape.strides(), shape.pads(), shape.pads()),
          engine, fwd);
      auto diff_wei = storage_for(pd.diff_weights_desc());
      std::unordered_map<int, memory> args{
          {DNNL_ARG_SRC, memory(pd.src_desc(), engine, src.data_ptr())},
          {DNNL_ARG_DIFF_DST, memory(pd.diff_dst_desc(), engine, diff_dst.data_ptr())},
          {DNNL_ARG_DIFF_WEIGHTS, memory(pd.diff_weights_desc(), engine, diff_wei.data_ptr())}};
      if (shape.bias) {
        grad_b = at::empty({weight.size(0)}, at::kFloat);
        args.emplace(DNNL_ARG_DIFF_BIAS, memory(shape.bias_desc(), engine, grad_b.data_ptr()));
      }
      dnnl::convolution_backward_weights(pd).execute(stream, args);
      grad_w = at::empty_like(dense(weight));  // the weight's layout: autograd keeps it without a copy
      memory from(pd.diff_weights_desc(), engine, diff_wei.data_ptr());
      memory to(plain_desc(grad_w), engine, grad_w.data_ptr());
      dnnl::reorder(from, to).execute(stream, from, to);
      if (!ctx->needs_input_grad(1)) grad_w = at::Tensor();
      if (!ctx->needs_input_grad(2)) grad_b = at::Tensor();
    }
    stream.wait();
    return {grad_x, grad_w, grad_b, at::Tensor()};
  }
};

// Whether this CPU's oneDNN has Winograd kernels (AVX-512 only): asked once per process by
// creating a forward primitive descriptor, since the answer depends on the CPU alone (channel
// counts are checked by the caller).
bool onednn_has_winograd() {
  static const bool available = [] {
    try {
      WinogradShape{1, 32, 16, 16, 32, 1, true}.forward(cpu_engine());
      return true;
    } catch (const dnnl::error&) {
      return false;
    }
  }();
  return available;
}

}  // namespace

bool conv2d_uses_winograd(const torch::Tensor& x, const torch::Tensor& weight, int64_t stride, int64_t padding,
                          int64_t dilation, int64_t groups) {
  return x.dim() == 4 && weight.dim() == 4 && x.device().is_cpu() && x.scalar_type() == torch::kFloat &&
         weight.scalar_type() == torch::kFloat && !at::autocast::is_cpu_enabled() && x.size(0) > 0 &&
         x.size(1) == weight.size(1) * groups &&
         cpu::winograd_shape_fits(weight.size(2), weight.size(3), stride, padding, dilation, groups, x.size(1),
                                  weight.size(0)) &&
         onednn_has_winograd();
}

torch::Tensor conv2d(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias, int64_t stride,
                     int64_t padding, int64_t dilation, int64_t groups, ConvKernel kernel) {
  if (kernel == ConvKernel::kLibTorch || !conv2d_uses_winograd(x, weight, stride, padding, dilation, groups)) {
    return torch::conv2d(x, weight, bias, stride, padding, dilation, groups);
  }
  // An autograd function takes no undefined tensors: an empty one stands for "no bias".
  try {
    return WinogradConvFunction::apply(x, weight, bias.defined() ? bias : at::empty({0}, weight.options()), padding);
  } catch (const dnnl::error&) {
    // A shape this CPU's Winograd kernels refuse (the probe above asked about one shape only).
    return torch::conv2d(x, weight, bias, stride, padding, dilation, groups);
  }
}

}  // namespace instseg::ops
