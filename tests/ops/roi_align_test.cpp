#include "instseg/ops/roi_align.h"

#include <ATen/Parallel.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "support/reference.h"

namespace instseg::ops {
namespace {

using ::testing::HasSubstr;

// The specification, written independently of the kernel: per output element, average of
// bilinear samples on a regular grid, coordinates clamped to the map (double, plain loops).
namespace reference {

double bilinear(const torch::TensorAccessor<double, 2>& plane, double y, double x) {
  const int64_t height = plane.size(0), width = plane.size(1);
  if (y < -1.0 || y > height || x < -1.0 || x > width) return 0.0;  // too far outside: ignored
  y = std::clamp(y, 0.0, static_cast<double>(height - 1));
  x = std::clamp(x, 0.0, static_cast<double>(width - 1));
  const int64_t y0 = static_cast<int64_t>(std::floor(y)), x0 = static_cast<int64_t>(std::floor(x));
  const int64_t y1 = std::min(y0 + 1, height - 1), x1 = std::min(x0 + 1, width - 1);
  const double ly = y - y0, lx = x - x0;
  return (1 - ly) * (1 - lx) * plane[y0][x0] + (1 - ly) * lx * plane[y0][x1] +
         ly * (1 - lx) * plane[y1][x0] + ly * lx * plane[y1][x1];
}

// input: [N, C, H, W] double; rois: [K, 5] double -> [K, C, PH, PW]
torch::Tensor roi_align(const torch::Tensor& input, const torch::Tensor& rois,
                        const RoiAlignOptions& o) {
  const int64_t channels = input.size(1), ph_n = o.pooled_height, pw_n = o.pooled_width;
  auto out = torch::zeros({rois.size(0), channels, ph_n, pw_n}, torch::kDouble);
  auto in = input.accessor<double, 4>();
  auto r = rois.accessor<double, 2>();
  auto res = out.accessor<double, 4>();
  const double shift = o.aligned ? 0.5 : 0.0;
  for (int64_t k = 0; k < rois.size(0); ++k) {
    const double x1 = r[k][1] * o.spatial_scale - shift, y1 = r[k][2] * o.spatial_scale - shift;
    double w = r[k][3] * o.spatial_scale - shift - x1, h = r[k][4] * o.spatial_scale - shift - y1;
    if (!o.aligned) w = std::max(w, 1.0), h = std::max(h, 1.0);
    const double bin_w = w / pw_n, bin_h = h / ph_n;
    const int64_t grid_h =
        o.sampling_ratio > 0 ? o.sampling_ratio : std::max(0.0, std::ceil(bin_h));
    const int64_t grid_w =
        o.sampling_ratio > 0 ? o.sampling_ratio : std::max(0.0, std::ceil(bin_w));
    for (int64_t c = 0; c < channels; ++c) {
      const auto plane = in[static_cast<int64_t>(r[k][0])][c];
      for (int64_t ph = 0; ph < ph_n; ++ph) {
        for (int64_t pw = 0; pw < pw_n; ++pw) {
          double sum = 0;
          for (int64_t iy = 0; iy < grid_h; ++iy) {
            for (int64_t ix = 0; ix < grid_w; ++ix) {
              sum += bilinear(plane, y1 + (ph + (iy + 0.5) / grid_h) * bin_h,
                              x1 + (pw + (ix + 0.5) / grid_w) * bin_w);
            }
          }
          res[k][c][ph][pw] = sum / std::max<int64_t>(grid_h * grid_w, 1);
        }
      }
    }
  }
  return out;
}

}  // namespace reference

struct TorchvisionCase {
  std::string name;
  RoiAlignOptions options;
  std::map<std::string, torch::Tensor> data;
};

// The 16 cases of tests/reference/ops.py: aligned x sampling ratio {0, 2} x scale 1/{4..32},
// pooled 7x5, boxes inside, crossing the border, tiny (< 0.5 px), empty and far outside.
std::vector<TorchvisionCase> torchvision_cases() {
  const std::string dir = testing::reference_dir("ops");
  std::vector<TorchvisionCase> cases;
  for (int aligned : {0, 1}) {
    for (int sampling : {0, 2}) {
      for (int denominator : {4, 8, 16, 32}) {
        TorchvisionCase c;
        c.name = "roi_align_a" + std::to_string(aligned) + "_s" + std::to_string(sampling) + "_d" +
                 std::to_string(denominator);
        c.data = testing::load_tensors(dir + "/" + c.name + ".pt");
        c.options.pooled_height = 7;
        c.options.pooled_width = 5;
        c.options.spatial_scale = c.data.at("spatial_scale").item<double>();
        c.options.sampling_ratio = sampling;
        c.options.aligned = aligned == 1;
        cases.push_back(std::move(c));
      }
    }
  }
  return cases;
}

double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kDouble) - b.to(torch::kDouble)).abs().max().item<double>();
}

TEST(RoIAlign, ForwardMatchesTorchvision) {
  for (const auto& c : torchvision_cases()) {
    const auto ours = roi_align(c.data.at("input"), c.data.at("rois"), c.options);
    const auto& expected = c.data.at("output");
    ASSERT_EQ(ours.sizes(), expected.sizes()) << c.name;
    EXPECT_LT(max_abs_diff(ours, expected), 1e-6) << c.name;
    EXPECT_GT(expected.abs().max().item<double>(), 0.1) << c.name << ": degenerate case";
  }
}

TEST(RoIAlign, BackwardMatchesTorchvision) {
  for (const auto& c : torchvision_cases()) {
    const auto input = c.data.at("input").clone().requires_grad_(true);
    roi_align(input, c.data.at("rois"), c.options).backward(c.data.at("grad_output"));
    EXPECT_LT(max_abs_diff(input.grad(), c.data.at("grad_input")), 1e-5) << c.name;
  }
}

TEST(RoIAlign, DoubleKernelMatchesSlowReference) {
  for (const auto& c : torchvision_cases()) {
    const auto input = c.data.at("input").to(torch::kDouble);
    const auto rois = c.data.at("rois").to(torch::kDouble);
    const auto fast = roi_align(input, rois, c.options);
    EXPECT_EQ(fast.scalar_type(), torch::kDouble);
    EXPECT_LT(max_abs_diff(fast, reference::roi_align(input, rois, c.options)), 1e-12) << c.name;
  }
}

// Large boxes (many samples per bin when adaptive) and a reversed box (x2 < x1, y2 < y1: with
// aligned=true its bins have negative size and samples run backwards).
TEST(RoIAlign, LargeAndReversedBoxesMatchReference) {
  torch::manual_seed(3);
  const auto input = torch::randn({1, 2, 40, 50}, torch::kDouble);
  const auto rois = torch::tensor(
      {{0.0, -7.3, 2.2, 48.9, 41.5}, {0.0, 3.0, 4.0, 3.2, 30.0}, {0.0, 20.0, 30.0, 12.5, 21.0}},
      torch::kDouble);
  for (bool aligned : {false, true}) {
    for (int64_t sampling : {0, 3}) {
      RoiAlignOptions o;
      o.pooled_height = o.pooled_width = 3;
      o.sampling_ratio = sampling;
      o.aligned = aligned;
      EXPECT_LT(max_abs_diff(roi_align(input, rois, o), reference::roi_align(input, rois, o)),
                1e-12);
    }
  }
}

// Central finite differences of <w, roi_align(x)> against the autograd gradient, in double.
TEST(RoIAlign, GradientMatchesFiniteDifferences) {
  torch::manual_seed(5);
  const auto x = torch::randn({2, 2, 5, 6}, torch::kDouble);
  const auto rois = torch::tensor({{0.0, -1.5, -0.7, 3.1, 4.2},
                                   {1.0, 1.2, 0.3, 5.9, 5.6},
                                   {1.0, 2.0, 2.0, 2.3, 2.1},
                                   {0.0, 0.5, 1.5, 7.5, 6.5}},
                                  torch::kDouble);
  for (bool aligned : {false, true}) {
    for (int64_t sampling : {0, 2}) {
      RoiAlignOptions o;
      o.pooled_height = 3;
      o.pooled_width = 2;
      o.spatial_scale = 0.8;
      o.sampling_ratio = sampling;
      o.aligned = aligned;
      const auto w = torch::randn({4, 2, 3, 2}, torch::kDouble);
      const auto xv = x.clone().requires_grad_(true);
      (roi_align(xv, rois, o) * w).sum().backward();
      const auto analytic = xv.grad();
      auto numeric = torch::zeros_like(x);
      const double eps = 1e-6;
      for (int64_t i = 0; i < x.numel(); ++i) {
        auto plus = x.clone(), minus = x.clone();
        plus.view(-1)[i] += eps;
        minus.view(-1)[i] -= eps;
        const double f_plus = (roi_align(plus, rois, o) * w).sum().item<double>();
        const double f_minus = (roi_align(minus, rois, o) * w).sum().item<double>();
        numeric.view(-1)[i] = (f_plus - f_minus) / (2 * eps);
      }
      EXPECT_GT(analytic.abs().max().item<double>(), 0.1);
      EXPECT_LT(max_abs_diff(analytic, numeric), 1e-8)
          << "aligned=" << aligned << " sampling=" << sampling;
    }
  }
}

TEST(RoIAlign, ThreadCountDoesNotChangeResults) {
  const auto c = torchvision_cases().front();
  const auto input = c.data.at("input").clone().requires_grad_(true);
  const int threads = at::get_num_threads();
  at::set_num_threads(1);
  const auto out1 = roi_align(input, c.data.at("rois"), c.options);
  out1.backward(c.data.at("grad_output"));
  const auto grad1 = input.grad().clone();
  input.mutable_grad().zero_();
  at::set_num_threads(std::max(threads, 3));
  const auto out3 = roi_align(input, c.data.at("rois"), c.options);
  out3.backward(c.data.at("grad_output"));
  at::set_num_threads(threads);
  EXPECT_TRUE(torch::equal(out1, out3));
  EXPECT_TRUE(torch::equal(grad1, input.grad()));
}

// Channels-last features (predict's fused path) take another forward, whose per-bin step is also
// built for AVX2 / AVX-512 and picked at load: it must give the NCHW kernel's values bit for bit,
// for channel counts that fill whole vectors and ones that leave a remainder.
TEST(RoIAlign, ChannelsLastForwardEqualsTheNchwOne) {
  for (const auto& c : torchvision_cases()) {
    const auto& input = c.data.at("input");
    const auto last = roi_align(input.contiguous(at::MemoryFormat::ChannelsLast), c.data.at("rois"), c.options);
    EXPECT_TRUE(last.is_contiguous(at::MemoryFormat::ChannelsLast)) << c.name;
    EXPECT_TRUE(torch::equal(last.contiguous(), roi_align(input, c.data.at("rois"), c.options))) << c.name;
  }
  torch::manual_seed(11);
  const auto rois = torch::tensor({{0.0, -3.0, 1.5, 60.0, 44.0},
                                   {1.0, 10.2, 7.7, 31.9, 19.4},
                                   {0.0, 50.0, 30.0, 63.9, 47.9},
                                   {1.0, 0.0, 0.0, 2.0, 2.0}});
  for (const int64_t channels : {256, 45, 3}) {
    const auto input = torch::randn({2, channels, 24, 32});
    for (const int64_t sampling : {2, 0}) {
      RoiAlignOptions o;
      o.pooled_height = 7;
      o.pooled_width = 5;
      o.spatial_scale = 0.5;
      o.sampling_ratio = sampling;
      const auto nchw = roi_align(input, rois, o);
      const auto last = roi_align(input.contiguous(at::MemoryFormat::ChannelsLast), rois, o);
      EXPECT_GT(nchw.abs().max().item<double>(), 0.5);
      EXPECT_TRUE(torch::equal(last.contiguous(), nchw)) << channels << " channels, sampling " << sampling;
    }
  }
}

// Features computed in bfloat16 (ops/mixed_precision.h) are pooled in the boxes' precision: the
// output of the features cast up first, and the gradient back on the bfloat16 features.
TEST(RoIAlign, BFloat16FeaturesArePooledInTheBoxesPrecision) {
  const auto c = torchvision_cases().front();
  const auto rois = c.data.at("rois");
  const auto features = c.data.at("input").to(torch::kBFloat16).requires_grad_(true);
  const auto cast_up = features.detach().to(rois.scalar_type()).requires_grad_(true);
  const auto out = roi_align(features, rois, c.options);
  const auto expected = roi_align(cast_up, rois, c.options);
  EXPECT_EQ(out.scalar_type(), rois.scalar_type());
  EXPECT_TRUE(torch::equal(out, expected));
  out.backward(c.data.at("grad_output"));
  expected.backward(c.data.at("grad_output"));
  EXPECT_EQ(features.grad().scalar_type(), torch::kBFloat16);
  EXPECT_TRUE(torch::equal(features.grad(), cast_up.grad().to(torch::kBFloat16)));
  EXPECT_GT(features.grad().abs().sum().item<double>(), 0);
}

TEST(RoIAlign, NoRoisGivesEmptyOutputAndZeroGradient) {
  const auto input = torch::randn({1, 4, 8, 8}).requires_grad_(true);
  const auto out = roi_align(input, torch::zeros({0, 5}), {});
  EXPECT_EQ(out.sizes(), (std::vector<int64_t>{0, 4, 7, 7}));
  out.sum().backward();
  EXPECT_TRUE(torch::equal(input.grad(), torch::zeros_like(input)));
}

TEST(RoIAlign, RejectsBadArguments) {
  const auto input = torch::randn({2, 3, 8, 8});
  const auto rois = torch::tensor({{0.0f, 1.0f, 1.0f, 5.0f, 5.0f}});
  const auto message = [](const std::function<void()>& f) {
    try {
      f();
    } catch (const c10::Error& e) {
      return std::string(e.what_without_backtrace());
    }
    return std::string("no error");
  };
  EXPECT_THAT(message([&] { roi_align(input[0], rois, {}); }), HasSubstr("[3, 8, 8]"));
  EXPECT_THAT(message([&] { roi_align(input, rois.narrow(1, 0, 4), {}); }), HasSubstr("[1, 4]"));
  EXPECT_THAT(message([&] { roi_align(input, rois.to(torch::kDouble), {}); }), HasSubstr("Double"));
  EXPECT_THAT(message([&] {
                roi_align(input, torch::tensor({{2.0f, 1.0f, 1.0f, 5.0f, 5.0f}}), {});
              }),
              HasSubstr("[0, 2), got [2, 2]"));
  RoiAlignOptions bad;
  bad.sampling_ratio = -1;
  EXPECT_THAT(message([&] { roi_align(input, rois, bad); }), HasSubstr("got -1"));
  bad = {};
  bad.spatial_scale = 0;
  EXPECT_THAT(message([&] { roi_align(input, rois, bad); }), HasSubstr("spatial_scale"));
  // A non-CPU tensor gets a clear refusal rather than a crash (meta needs no accelerator).
  EXPECT_THAT(message([&] {
                roi_align(torch::empty({2, 3, 8, 8}, torch::Device("meta")),
                          torch::empty({0, 5}, torch::Device("meta")), {});
              }),
              HasSubstr("not implemented on meta"));
}

}  // namespace
}  // namespace instseg::ops
