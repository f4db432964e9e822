// ops/fused_conv.h on oneDNN's C++ API. Each layer keeps, per input shape it has seen, the
// primitive and the weights reordered into the layout that primitive wants (oneDNN picks blocked
// weight layouts for its AVX-512 kernels); images of a new size create new primitives (oneDNN's
// own primitive cache makes a shape seen before cheap to recreate, so a layer keeps few).
#include "instseg/ops/fused_conv.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <mutex>
#include <oneapi/dnnl/dnnl.hpp>
#include <vector>

#include "instseg/errors.h"
#include "ops/cpu/blocked_copy.h"
#include "ops/cpu/winograd_shape.h"

namespace instseg::ops {
namespace {

using dnnl::memory;
using Tag = memory::format_tag;
using Dt = memory::data_type;

// The arithmetic and storage types of one layer.
struct Types {
  Dt compute;  // src and weights
  Dt dst;
  at::ScalarType compute_scalar;
  at::ScalarType dst_scalar;
};

Types types_of(InferencePrecision precision, bool float_output) {
  if (precision == InferencePrecision::kFloat32) return {Dt::f32, Dt::f32, at::kFloat, at::kFloat};
  return {Dt::bf16, float_output ? Dt::f32 : Dt::bf16, at::kBFloat16, float_output ? at::kFloat : at::kBFloat16};
}

// How many shapes a layer keeps primitives for: a folder of photos has a few distinct sizes.
constexpr size_t kShapesKept = 8;

template <typename Primitive>
struct ShapeEntry {
  memory::dims src_dims;
  bool sum;  // with the residual add
  typename Primitive::primitive_desc pd;
  Primitive primitive;
  memory weights;  // in pd.weights_desc()
};

// The weights, reordered once per layout a primitive asks for.
class PackedWeights {
 public:
  PackedWeights(const dnnl::engine& engine, at::Tensor plain, memory::desc plain_desc)
      : engine_(engine), plain_(std::move(plain)), plain_desc_(std::move(plain_desc)) {}
  memory get(const memory::desc& wanted) {
    for (auto& m : packed_) {
      if (m.get_desc() == wanted) return m;
    }
    memory source(plain_desc_, engine_, plain_.data_ptr());
    memory packed(wanted, engine_);
    dnnl::stream stream(engine_);
    dnnl::reorder(source, packed).execute(stream, source, packed);
    stream.wait();
    packed_.push_back(packed);
    return packed;
  }

 private:
  dnnl::engine engine_;
  at::Tensor plain_;  // in the compute dtype
  memory::desc plain_desc_;
  std::vector<memory> packed_;
};

// Winograd convolutions run on pieces of the map whose blocked input is at most this large:
// oneDNN's Winograd kernels take a scratchpad of transformed tiles (~300 MB for one 256-channel
// 200x304 map, growing with the image) and their 16-channel-blocked layout needs a copy of the
// input and output. Per piece those stay bounded whatever the image size (and the copies stay in
// cache), at the cost of reading two extra input rows per strip.
constexpr int64_t kWinogradPieceBytes = int64_t{8} << 20;

// One Winograd primitive, for pieces of one shape: `images` images of `in_rows` input rows of
// `width` columns, padded above and below by `pad_top` / `pad_bottom` (1 at the map's edges, 0
// inside it).
struct WinogradPart {
  int64_t images, in_rows, pad_top, pad_bottom, width;
  dnnl::convolution_forward::primitive_desc pd;
  dnnl::convolution_forward primitive;
  memory weights;  // in pd.weights_desc()
};

// Output rows [out_row, out_row + rows) of images [image, image + images), computed from input
// rows [in_row, in_row + in_rows) by the layer's part `part`.
struct WinogradPiece {
  int64_t image, in_row, out_row, rows;
  size_t part;
};

// How one input shape is convolved: its pieces in order. No pieces: oneDNN refused the shape, and
// the direct kernel serves it.
struct WinogradPlan {
  memory::dims src_dims;
  std::vector<WinogradPiece> pieces;
  int64_t src_bytes = 0, dst_bytes = 0;  // the largest piece's blocked input and output
};

// Parts a layer keeps (shared by its plans) before it starts afresh: strips of a few image sizes
// and the power-of-two groups of small maps stay well below it.
constexpr size_t kWinogradPartsKept = 48;

at::Tensor as_compute(const at::Tensor& x, at::ScalarType dtype, at::MemoryFormat format) {
  auto y = x.scalar_type() == dtype ? x : x.to(dtype);
  return y.is_contiguous(format) ? y : y.contiguous(format);
}

}  // namespace

std::string to_string(InferencePrecision precision) {
  return precision == InferencePrecision::kFloat32 ? "fp32" : "bf16";
}

InferencePrecision inference_precision_named(const std::string& name, const std::string& setting) {
  if (name == "fp32") return InferencePrecision::kFloat32;
  if (name == "bf16") return InferencePrecision::kBFloat16;
  throw ConfigError(setting + " must be fp32 or bf16, got '" + name + "'");
}

// ---------------------------------------------------------------------------------------------
struct FusedConv2d::Impl {
  FusedConvOptions options;
  Types types;
  int64_t out_channels, in_channels, kernel_h, kernel_w;
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  at::Tensor bias;  // fp32 [O]
  mutable std::mutex mutex;
  mutable PackedWeights weights;
  mutable std::vector<ShapeEntry<dnnl::convolution_forward>> shapes;
  mutable std::vector<WinogradPlan> winograd_plans;
  mutable std::vector<WinogradPart> winograd_parts;

  Impl(const at::Tensor& w, const at::Tensor& b, FusedConvOptions o)
      : options(o),
        types(types_of(o.precision, o.float_output)),
        out_channels(w.size(0)),
        in_channels(w.size(1)),
        kernel_h(w.size(2)),
        kernel_w(w.size(3)),
        bias(b.defined() ? b.detach().to(at::kFloat).contiguous().clone() : at::zeros({w.size(0)}, at::kFloat)),
        weights(engine, w.detach().to(types.compute_scalar).contiguous().clone(),
                memory::desc({w.size(0), w.size(1), w.size(2), w.size(3)}, types.compute, Tag::oihw)) {}

  int64_t out_size(int64_t in, int64_t kernel) const {
    const int64_t range = (kernel - 1) * options.dilation + 1;
    return (in + 2 * options.padding - range) / options.stride + 1;
  }

  const ShapeEntry<dnnl::convolution_forward>& entry(const memory::dims& src_dims, bool sum) const {
    for (const auto& e : shapes) {
      if (e.src_dims == src_dims && e.sum == sum) return e;
    }
    const int64_t n = src_dims[0], h = src_dims[2], w = src_dims[3];
    const int64_t oh = out_size(h, kernel_h), ow = out_size(w, kernel_w);
    TORCH_CHECK(oh > 0 && ow > 0, "FusedConv2d: input ", h, "x", w, " is smaller than the kernel");
    const int64_t p = options.padding, s = options.stride, d = options.dilation;
    // oneDNN wants the right padding that the floor in the output size leaves effective.
    const memory::dims pad_l{p, p};
    const memory::dims pad_r{(oh - 1) * s + (kernel_h - 1) * d + 1 - h - p,
                             (ow - 1) * s + (kernel_w - 1) * d + 1 - w - p};
    memory::desc src_md(src_dims, types.compute, Tag::nhwc);
    memory::desc w_md({out_channels, in_channels, kernel_h, kernel_w}, types.compute, Tag::any);
    memory::desc b_md({out_channels}, Dt::f32, Tag::a);
    memory::desc dst_md({n, out_channels, oh, ow}, types.dst, Tag::nhwc);
    dnnl::convolution_forward::desc desc(dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct,
                                         src_md, w_md, b_md, dst_md, {s, s}, {d - 1, d - 1}, pad_l, pad_r);
    dnnl::post_ops post;
    if (sum) post.append_sum(1.0f);
    if (options.relu) post.append_eltwise(1.0f, dnnl::algorithm::eltwise_relu, 0.0f, 0.0f);
    dnnl::primitive_attr attr;
    attr.set_post_ops(post);
    if (shapes.size() >= kShapesKept) shapes.erase(shapes.begin());
    dnnl::convolution_forward::primitive_desc pd(desc, attr, engine);
    shapes.push_back({src_dims, sum, pd, dnnl::convolution_forward(pd), weights.get(pd.weights_desc())});
    return shapes.back();
  }

  // Winograd F(4x4, 3x3) for fp32 3x3 stride-1 convolutions without a residual add (the
  // bottlenecks' middle convolutions, the FPN's outputs, the RPN and mask heads): 2-2.7x oneDNN's
  // direct kernels on these shapes, worth the reorders to and from its blocked layout
  // (docs/benchmarks.md). AVX-512 CPUs only; elsewhere creating it fails and the direct kernel
  // serves. Not above 256 channels: oneDNN's Winograd weight layout for 512 channels changes with
  // the map size, so every new image size paid a weight transform of ~4x a direct convolution's
  // time per layer, for a gain on layer4's small maps that did not show end to end.
  bool winograd_serves(bool sum) const {
    constexpr int64_t kWinogradMaxChannels = 256;
    return options.winograd && types.compute == Dt::f32 && !sum &&
           cpu::winograd_shape_fits(kernel_h, kernel_w, options.stride, options.padding, options.dilation, 1,
                                    in_channels, out_channels) &&
           in_channels <= kWinogradMaxChannels && out_channels <= kWinogradMaxChannels;
  }

  // The pieces of a [N, C, H, W] input. Maps of at most kWinogradPieceBytes run as groups of
  // whole images whose sizes are powers of two (17 RoIs: 16 + 1), so the mask head's RoI count,
  // which changes with every image, maps onto a few primitives; the first time a map size is seen
  // every power of two up to the batch is made, with the weight layouts oneDNN picks for them
  // (each a ~30 ms transform for 256 channels): the first image pays for them, not whichever later
  // image first has a new count. Larger maps run each image in strips of rows (a multiple of
  // Winograd's 4-row output tiles, so the tiles are the ones the whole map would have).
  const WinogradPlan& winograd_plan(const memory::dims& src_dims) const {
    for (const auto& plan : winograd_plans) {
      if (plan.src_dims == src_dims) return plan;
    }
    if (winograd_parts.size() > kWinogradPartsKept) {
      winograd_parts.clear();
      winograd_plans.clear();
    }
    if (winograd_plans.size() >= kShapesKept) winograd_plans.erase(winograd_plans.begin());
    winograd_plans.push_back({src_dims, {}});
    WinogradPlan& plan = winograd_plans.back();
    const int64_t n = src_dims[0], h = src_dims[2], w = src_dims[3];
    const int64_t row_bytes = w * in_channels * static_cast<int64_t>(sizeof(float));
    const int64_t image_bytes = h * row_bytes;
    try {
      if (image_bytes <= kWinogradPieceBytes) {
        const int64_t fit = std::min(n, kWinogradPieceBytes / image_bytes);
        int64_t group = 1;
        while (group * 2 <= fit) group *= 2;
        for (int64_t g = group; g >= 1; g /= 2) winograd_part(g, h, 1, 1, w);
        for (int64_t image = 0; image < n; image += group) {
          while (group > n - image) group /= 2;
          plan.pieces.push_back({image, 0, 0, h, winograd_part(group, h, 1, 1, w)});
        }
      } else {
        const int64_t strip = std::max<int64_t>(4, (kWinogradPieceBytes / row_bytes - 2) / 4 * 4);
        for (int64_t image = 0; image < n; ++image) {
          for (int64_t row = 0; row < h; row += strip) {
            const int64_t end = std::min(h, row + strip);
            const int64_t in_row = std::max<int64_t>(0, row - 1), in_end = std::min(h, end + 1);
            plan.pieces.push_back(
                {image, in_row, row, end - row,
                 winograd_part(1, in_end - in_row, row == 0 ? 1 : 0, end == h ? 1 : 0, w)});
          }
        }
      }
    } catch (const dnnl::error&) {
      plan.pieces.clear();
    }
    for (const auto& piece : plan.pieces) {
      const auto& pd = winograd_parts[piece.part].pd;
      plan.src_bytes = std::max(plan.src_bytes, static_cast<int64_t>(pd.src_desc().get_size()));
      plan.dst_bytes = std::max(plan.dst_bytes, static_cast<int64_t>(pd.dst_desc().get_size()));
    }
    return plan;
  }

  size_t winograd_part(int64_t images, int64_t in_rows, int64_t pad_top, int64_t pad_bottom, int64_t w) const {
    for (size_t i = 0; i < winograd_parts.size(); ++i) {
      const auto& p = winograd_parts[i];
      if (p.images == images && p.in_rows == in_rows && p.pad_top == pad_top && p.pad_bottom == pad_bottom &&
          p.width == w) {
        return i;
      }
    }
    const int64_t out_rows = in_rows + pad_top + pad_bottom - 2;
    const memory::desc src_md({images, in_channels, in_rows, w}, Dt::f32, Tag::nChw16c);
    const memory::desc dst_md({images, out_channels, out_rows, w}, Dt::f32, Tag::nChw16c);
    dnnl::convolution_forward::desc desc(
        dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_winograd, src_md,
        memory::desc({out_channels, in_channels, 3, 3}, Dt::f32, Tag::any), memory::desc({out_channels}, Dt::f32, Tag::a),
        dst_md, {1, 1}, {0, 0}, {pad_top, 1}, {pad_bottom, 1});
    dnnl::post_ops post;
    if (options.relu) post.append_eltwise(1.0f, dnnl::algorithm::eltwise_relu, 0.0f, 0.0f);
    dnnl::primitive_attr attr;
    attr.set_post_ops(post);
    dnnl::convolution_forward::primitive_desc pd(desc, attr, engine);
    winograd_parts.push_back({images, in_rows, pad_top, pad_bottom, w, pd, dnnl::convolution_forward(pd),
                              weights.get(pd.weights_desc())});
    return winograd_parts.size() - 1;
  }

  // Each piece: its rows reordered from channels-last into the blocked buffer, convolved, and its
  // output rows reordered into the channels-last result (an image's rows are contiguous there).
  at::Tensor run_winograd(const WinogradPlan& plan, const at::Tensor& src) const {
    const int64_t n = src.size(0), h = src.size(2), w = src.size(3);
    auto dst = at::empty({n, out_channels, h, w}, src.options().memory_format(at::MemoryFormat::ChannelsLast));
    auto src_buffer = at::empty({plan.src_bytes}, src.options().dtype(at::kByte));
    auto dst_buffer = at::empty({plan.dst_bytes}, src.options().dtype(at::kByte));
    const auto* src_data = src.data_ptr<float>();
    auto* dst_data = dst.data_ptr<float>();
    memory bias_mem(winograd_parts[plan.pieces.front().part].pd.bias_desc(), engine,
                    bias.data_ptr());  // the same in every part
    dnnl::stream stream(engine);
    auto* src_blocked = static_cast<float*>(src_buffer.data_ptr());
    auto* dst_blocked = static_cast<float*>(dst_buffer.data_ptr());
    for (const auto& piece : plan.pieces) {
      const auto& part = winograd_parts[piece.part];
      cpu::channels_last_to_blocked16(src_data + (piece.image * h + piece.in_row) * w * in_channels, src_blocked,
                                      part.images, part.in_rows * w, in_channels);
      memory blocked_src(part.pd.src_desc(), engine, src_blocked);
      memory blocked_dst(part.pd.dst_desc(), engine, dst_blocked);
      part.primitive.execute(stream, {{DNNL_ARG_SRC, blocked_src},
                                      {DNNL_ARG_WEIGHTS, part.weights},
                                      {DNNL_ARG_BIAS, bias_mem},
                                      {DNNL_ARG_DST, blocked_dst}});
      stream.wait();
      cpu::blocked16_to_channels_last(dst_blocked, dst_data + (piece.image * h + piece.out_row) * w * out_channels,
                                      part.images, piece.rows * w, out_channels);
    }
    return dst;
  }

  at::Tensor run(const at::Tensor& x, at::Tensor accumulate) const {
    TORCH_CHECK(x.dim() == 4 && x.size(1) == in_channels, "FusedConv2d: expected [N, ", in_channels,
                ", H, W], got ", x.sizes());
    const auto src = as_compute(x, types.compute_scalar, at::MemoryFormat::ChannelsLast);
    const memory::dims src_dims{src.size(0), src.size(1), src.size(2), src.size(3)};
    const bool sum = accumulate.defined();
    std::lock_guard<std::mutex> lock(mutex);
    if (winograd_serves(sum)) {
      const auto& plan = winograd_plan(src_dims);
      if (!plan.pieces.empty()) return run_winograd(plan, src);
    }
    const auto& e = entry(src_dims, sum);
    const auto dst_md = e.pd.dst_desc();
    const auto dims = dst_md.dims();
    at::Tensor dst;
    if (sum) {
      TORCH_CHECK(accumulate.sizes() == at::IntArrayRef(dims) && accumulate.scalar_type() == types.dst_scalar &&
                      accumulate.is_contiguous(at::MemoryFormat::ChannelsLast),
                  "FusedConv2d::forward_add: the addend must be channels-last ", at::IntArrayRef(dims), " of ",
                  types.dst_scalar, ", got ", accumulate.sizes(), " ", accumulate.scalar_type());
      dst = std::move(accumulate);
    } else {
      dst = at::empty(dims, src.options().dtype(types.dst_scalar).memory_format(at::MemoryFormat::ChannelsLast));
    }
    memory bias_mem(e.pd.bias_desc(), engine, bias.data_ptr());
    dnnl::stream stream(engine);
    memory src_mem(e.pd.src_desc(), engine, src.data_ptr());
    memory dst_mem(dst_md, engine, dst.data_ptr());
    e.primitive.execute(stream, {{DNNL_ARG_SRC, src_mem},
                                 {DNNL_ARG_WEIGHTS, e.weights},
                                 {DNNL_ARG_BIAS, bias_mem},
                                 {DNNL_ARG_DST, dst_mem}});
    stream.wait();
    return dst;
  }
};

FusedConv2d::FusedConv2d(const at::Tensor& weight, const at::Tensor& bias, FusedConvOptions options) {
  TORCH_CHECK(weight.dim() == 4, "FusedConv2d: weight must be [O, I, KH, KW], got ", weight.sizes());
  impl_ = std::make_shared<const Impl>(weight, bias, options);
}

at::Tensor FusedConv2d::forward(const at::Tensor& x) const { return impl_->run(x, at::Tensor()); }

at::Tensor FusedConv2d::forward_add(const at::Tensor& x, at::Tensor accumulate) const {
  TORCH_CHECK(accumulate.defined(), "FusedConv2d::forward_add: no addend");
  return impl_->run(x, std::move(accumulate));
}

int64_t FusedConv2d::out_channels() const { return impl_->out_channels; }

// ---------------------------------------------------------------------------------------------
struct FusedLinear::Impl {
  bool relu;
  Types types;
  int64_t out_features, in_features;
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  at::Tensor bias;
  mutable std::mutex mutex;
  mutable PackedWeights weights;
  mutable std::vector<ShapeEntry<dnnl::inner_product_forward>> shapes;

  Impl(const at::Tensor& w, const at::Tensor& b, bool relu_, InferencePrecision precision, bool float_output)
      : relu(relu_),
        types(types_of(precision, float_output)),
        out_features(w.size(0)),
        in_features(w.size(1)),
        bias(b.defined() ? b.detach().to(at::kFloat).contiguous().clone() : at::zeros({w.size(0)}, at::kFloat)),
        weights(engine, w.detach().to(types.compute_scalar).contiguous().clone(),
                memory::desc({w.size(0), w.size(1)}, types.compute, Tag::oi)) {}

  at::Tensor run(const at::Tensor& x) const {
    TORCH_CHECK(x.dim() == 2 && x.size(1) == in_features, "FusedLinear: expected [R, ", in_features, "], got ",
                x.sizes());
    if (x.size(0) == 0) return at::empty({0, out_features}, x.options().dtype(types.dst_scalar));
    const auto src = as_compute(x, types.compute_scalar, at::MemoryFormat::Contiguous);
    const memory::dims src_dims{src.size(0), src.size(1)};
    std::lock_guard<std::mutex> lock(mutex);
    const ShapeEntry<dnnl::inner_product_forward>* found = nullptr;
    for (const auto& e : shapes) {
      if (e.src_dims == src_dims) found = &e;
    }
    if (found == nullptr) {
      memory::desc src_md(src_dims, types.compute, Tag::nc);
      memory::desc w_md({out_features, in_features}, types.compute, Tag::any);
      memory::desc b_md({out_features}, Dt::f32, Tag::a);
      memory::desc dst_md({src_dims[0], out_features}, types.dst, Tag::nc);
      dnnl::inner_product_forward::desc desc(dnnl::prop_kind::forward_inference, src_md, w_md, b_md, dst_md);
      dnnl::post_ops post;
      if (relu) post.append_eltwise(1.0f, dnnl::algorithm::eltwise_relu, 0.0f, 0.0f);
      dnnl::primitive_attr attr;
      attr.set_post_ops(post);
      dnnl::inner_product_forward::primitive_desc pd(desc, attr, engine);
      if (shapes.size() >= kShapesKept) shapes.erase(shapes.begin());
      shapes.push_back({src_dims, false, pd, dnnl::inner_product_forward(pd), weights.get(pd.weights_desc())});
      found = &shapes.back();
    }
    auto dst = at::empty({src_dims[0], out_features}, src.options().dtype(types.dst_scalar));
    memory src_mem(found->pd.src_desc(), engine, src.data_ptr());
    memory bias_mem(found->pd.bias_desc(), engine, bias.data_ptr());
    memory dst_mem(found->pd.dst_desc(), engine, dst.data_ptr());
    dnnl::stream stream(engine);
    found->primitive.execute(stream, {{DNNL_ARG_SRC, src_mem},
                                      {DNNL_ARG_WEIGHTS, found->weights},
                                      {DNNL_ARG_BIAS, bias_mem},
                                      {DNNL_ARG_DST, dst_mem}});
    stream.wait();
    return dst;
  }
};

FusedLinear::FusedLinear(const at::Tensor& weight, const at::Tensor& bias, bool relu, InferencePrecision precision,
                         bool float_output) {
  TORCH_CHECK(weight.dim() == 2, "FusedLinear: weight must be [O, I], got ", weight.sizes());
  impl_ = std::make_shared<const Impl>(weight, bias, relu, precision, float_output);
}

at::Tensor FusedLinear::forward(const at::Tensor& x) const { return impl_->run(x); }

}  // namespace instseg::ops
