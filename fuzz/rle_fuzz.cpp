// RLE masks (include/instseg/coco/rle.h): compressed strings, uncompressed counts, polygons, boxes,
// encode/decode, merge and IoU. The first byte picks the entry point, the rest is its input.
// Documented refusal: InputError. Round trips are checked, so a silently wrong mask is a finding.
#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "fuzz_util.h"
#include "instseg/coco/rle.h"
#include "instseg/errors.h"

namespace {

using instseg::coco::Rle;
namespace coco = instseg::coco;

// Masks up to 64x64 keep decode() cheap; the polygon paths get the full range of sizes below.
uint32_t small_side(FuzzedDataProvider& in) { return in.ConsumeIntegralInRange<uint32_t>(0, 64); }

// Any double, NaN, infinities and huge values included: file coordinates are user input.
double any_double(FuzzedDataProvider& in) {
  if (in.ConsumeBool()) return in.ConsumeFloatingPoint<double>();
  uint64_t bits = in.ConsumeIntegral<uint64_t>();
  double d;
  std::memcpy(&d, &bits, sizeof d);
  return d;
}

// A valid mask's properties: runs cover h*w, decode/encode/to_string/from_string agree.
void check_mask(const Rle& rle) {
  uint64_t total = 0;
  for (uint32_t c : rle.counts) total += c;
  FUZZ_CHECK(total == uint64_t(rle.h) * rle.w);
  const auto area = coco::area(rle);
  const auto box = coco::to_bbox(rle);
  // Inside the mask when it has foreground (an empty mask's box is maskApi's: garbage for 0-wide
  // masks, kept for bit-equality with pycocotools).
  if (area > 0) FUZZ_CHECK(box[0] >= 0 && box[1] >= 0 && box[0] + box[2] <= rle.w && box[1] + box[3] <= rle.h);
  if (uint64_t(rle.h) * rle.w > 1u << 16) return;  // large masks: no pixel-level checks
  const auto pixels = coco::decode(rle);
  FUZZ_CHECK(pixels.size() == size_t(rle.h) * rle.w);
  FUZZ_CHECK(uint64_t(std::count(pixels.begin(), pixels.end(), 1)) == area);
  const Rle again = coco::encode(pixels.data(), rle.h, rle.w);
  FUZZ_CHECK(coco::decode(again) == pixels);
  const Rle parsed = coco::from_string(coco::to_string(again), rle.h, rle.w);
  FUZZ_CHECK(parsed.counts == again.counts);
  if (area > 0) FUZZ_CHECK(coco::mask_iou(rle, rle, false) == 1.0);
}

void run(FuzzedDataProvider& in) {
  switch (in.ConsumeIntegralInRange<int>(0, 6)) {
    case 0: {  // compressed counts string
      const uint32_t h = small_side(in), w = small_side(in);
      check_mask(coco::from_string(in.ConsumeRemainingBytesAsString(), h, w));
      break;
    }
    case 1: {  // uncompressed counts (iscrowd annotations)
      const uint32_t h = small_side(in), w = small_side(in);
      std::vector<uint32_t> counts;
      while (in.remaining_bytes() > 0 && counts.size() < 4096) counts.push_back(in.ConsumeIntegral<uint32_t>());
      check_mask(coco::from_uncompressed(counts, h, w));
      break;
    }
    case 2: {  // a mask as bytes
      const uint32_t h = small_side(in), w = small_side(in);
      std::vector<uint8_t> mask = in.ConsumeBytes<uint8_t>(size_t(h) * w);
      mask.resize(size_t(h) * w, 0);
      const Rle rle = coco::encode(mask.data(), h, w);
      check_mask(rle);
      std::vector<uint8_t> binary(mask.size());
      for (size_t i = 0; i < mask.size(); ++i) binary[i] = mask[i] != 0;
      FUZZ_CHECK(coco::decode(rle) == binary);
      break;
    }
    case 3: {  // polygons with any coordinates, on images up to 2^20 px a side (the COCO readers' limit; a mask's runs
               // grow with its width, as they should: no limit to find past real image sizes)
      const uint32_t h = in.ConsumeIntegralInRange<uint32_t>(0, 1 << 20);
      const uint32_t w = in.ConsumeIntegralInRange<uint32_t>(0, 1 << 20);
      std::vector<std::vector<double>> polygons(in.ConsumeIntegralInRange<int>(1, 3));
      for (auto& p : polygons) {
        const int n = in.ConsumeIntegralInRange<int>(0, 16);
        for (int i = 0; i < n; ++i) p.push_back(any_double(in));
      }
      coco::from_polygon(polygons[0], h, w);
      const Rle merged = coco::from_polygons(polygons, h, w);
      FUZZ_CHECK(merged.h == h && merged.w == w);
      check_mask(merged);
      break;
    }
    case 4: {  // polygon coordinates near the image: exercises rasterisation itself
      const uint32_t h = small_side(in), w = small_side(in);
      std::vector<double> xy;
      while (in.remaining_bytes() > 0 && xy.size() < 64) xy.push_back(in.ConsumeFloatingPointInRange<double>(-80, 80));
      check_mask(coco::from_polygon(xy, h, w));
      break;
    }
    case 5: {  // boxes
      const uint32_t h = in.ConsumeIntegralInRange<uint32_t>(0, 1 << 20);
      const uint32_t w = in.ConsumeIntegralInRange<uint32_t>(0, 1 << 20);
      std::array<double, 4> box{any_double(in), any_double(in), any_double(in), any_double(in)};
      check_mask(coco::from_box(box, h, w));
      break;
    }
    case 6: {  // merge and IoU of masks of one or two sizes
      const uint32_t h1 = small_side(in), w1 = small_side(in);
      const bool same = in.ConsumeBool();
      const uint32_t h2 = same ? h1 : small_side(in), w2 = same ? w1 : small_side(in);
      auto mask = [&](uint32_t h, uint32_t w) {
        std::vector<uint8_t> m = in.ConsumeBytes<uint8_t>(size_t(h) * w);
        m.resize(size_t(h) * w, 0);
        return coco::encode(m.data(), h, w);
      };
      const Rle a = mask(h1, w1), b = mask(h2, w2);
      const bool crowd = in.ConsumeBool();
      const double iou = coco::iou(a, b, crowd);
      FUZZ_CHECK(iou == -1 || (iou >= 0 && iou <= 1));
      for (bool intersect : {false, true}) {
        const Rle m = coco::merge({a, b}, intersect);
        if (same) {
          check_mask(m);
          const uint64_t inter = coco::intersection_area(a, b);
          FUZZ_CHECK(coco::area(m) == (intersect ? inter : coco::area(a) + coco::area(b) - inter));
        }
      }
      std::array<double, 4> d{any_double(in), any_double(in), any_double(in), any_double(in)};
      std::array<double, 4> g{any_double(in), any_double(in), any_double(in), any_double(in)};
      coco::box_iou(d, g, crowd);
      break;
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  try {
    run(in);
  } catch (const instseg::InputError&) {
  }
  return 0;
}
