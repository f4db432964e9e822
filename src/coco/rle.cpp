#include "instseg/coco/rle.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "instseg/errors.h"

namespace instseg::coco {
namespace {

uint64_t sum_counts(const std::vector<uint32_t>& counts) {
  uint64_t total = 0;
  for (uint32_t c : counts) total += c;
  return total;
}

void check_size(uint32_t h, uint32_t w) {
  if (uint64_t(h) * w > kMaxMaskPixels) {
    throw InputError("mask size [" + std::to_string(h) + ", " + std::to_string(w) +
                     "] has more than 2^32 - 1 pixels (COCO RLE positions are 32-bit)");
  }
}

// %g: short, and exact enough to recognise the value in the file.
std::string format_number(double value) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%g", value);
  return buffer;
}

// Sorts `a` and drops positions that occur an even number of times, keeping one of an odd number:
// what the runs computed from the sorted list see anyway (two toggles at one place cancel).
void cancel_pairs(std::vector<uint32_t>& a) {
  std::sort(a.begin(), a.end());
  size_t out = 0;
  for (size_t i = 0; i < a.size();) {
    size_t j = i + 1;
    while (j < a.size() && a[j] == a[i]) ++j;
    if ((j - i) % 2) a[out++] = a[i];
    i = j;
  }
  a.resize(out);
}

void check_polygon_coordinate(double value, size_t index) {
  if (!std::isfinite(value)) {
    throw InputError("polygon coordinate " + std::to_string(index) + " is " + format_number(value) +
                     ": not a finite number");
  }
  if (std::fabs(value) > kMaxPolygonCoordinate) {
    throw InputError("polygon coordinate " + std::to_string(index) + " is " + format_number(value) +
                     ": beyond +-" + format_number(kMaxPolygonCoordinate) + " pixels");
  }
}

void check_total(const std::vector<uint32_t>& counts, uint32_t h, uint32_t w) {
  const uint64_t total = sum_counts(counts);
  if (total != uint64_t(h) * w) {
    throw InputError("runs sum to " + std::to_string(total) + " pixels, size [" + std::to_string(h) +
                     ", " + std::to_string(w) + "] needs " + std::to_string(uint64_t(h) * w));
  }
}

}  // namespace

Rle encode(const uint8_t* mask, uint32_t h, uint32_t w) {
  check_size(h, w);
  Rle rle{h, w, {}};
  uint8_t previous = 0;
  uint32_t run = 0;
  for (uint32_t x = 0; x < w; ++x) {
    for (uint32_t y = 0; y < h; ++y) {
      const uint8_t value = mask[size_t(y) * w + x] != 0;
      if (value != previous) {
        rle.counts.push_back(run);
        run = 0;
        previous = value;
      }
      ++run;
    }
  }
  rle.counts.push_back(run);
  return rle;
}

std::vector<uint8_t> decode(const Rle& rle) {
  check_size(rle.h, rle.w);
  std::vector<uint8_t> mask(size_t(rle.h) * rle.w, 0);
  size_t pos = 0;  // column-major position
  uint8_t value = 0;
  for (uint32_t c : rle.counts) {
    // Runs past the end (an Rle built by hand) stop at it instead of counting up to 2^32 each.
    const size_t end = std::min(mask.size(), pos + c);
    if (value) {
      for (; pos < end; ++pos) mask[(pos % rle.h) * rle.w + pos / rle.h] = 1;
    }
    pos = end;
    value = !value;
  }
  return mask;
}

std::string to_string(const Rle& rle) {
  std::string s;
  s.reserve(rle.counts.size() * 2);
  for (size_t i = 0; i < rle.counts.size(); ++i) {
    // From the 4th run on, the difference with the run of the same value before is stored.
    int64_t x = rle.counts[i];
    if (i > 2) x -= int64_t(rle.counts[i - 2]);
    bool more = true;
    while (more) {
      int c = int(x & 0x1f);
      x >>= 5;  // arithmetic shift: negative deltas end at -1
      more = (c & 0x10) ? x != -1 : x != 0;
      if (more) c |= 0x20;
      s.push_back(char(c + 48));
    }
  }
  return s;
}

Rle from_string(const std::string& counts, uint32_t h, uint32_t w) {
  return from_string(counts.data(), counts.size(), h, w);
}

Rle from_string(const char* counts, size_t length, uint32_t h, uint32_t w) {
  Rle rle;
  from_string(counts, length, h, w, rle);
  return rle;
}

void from_string(const char* counts, size_t length, uint32_t h, uint32_t w, Rle& rle) {
  check_size(h, w);
  // Runs end at characters without the continuation bit (0x20): count them first so the runs
  // take one exact allocation (a results file holds millions of masks).
  size_t runs = 0;
  for (size_t p = 0; p < length; ++p) runs += ((static_cast<unsigned char>(counts[p]) - 48) & 0x20) == 0;
  rle.h = h;
  rle.w = w;
  rle.counts.resize(runs);
  uint32_t* out = rle.counts.data();
  size_t m = 0, p = 0;
  while (p < length) {
    int64_t x = 0;
    int k = 0;
    bool more = true;
    while (more) {
      if (p >= length) throw InputError("compressed counts end inside a number");
      const int c = int(static_cast<unsigned char>(counts[p])) - 48;
      if (c < 0 || c > 63 || k > 6) {
        throw InputError("invalid compressed counts at character " + std::to_string(p));
      }
      x |= int64_t(c & 0x1f) << (5 * k);
      more = c & 0x20;
      ++p;
      ++k;
      if (!more && (c & 0x10)) x |= int64_t(-1) * (int64_t(1) << (5 * k));  // sign extension
    }
    if (m > 2) x += int64_t(out[m - 2]);
    if (x < 0 || x > int64_t(UINT32_MAX)) {
      throw InputError("compressed counts decode to a negative run at run " + std::to_string(m));
    }
    out[m++] = uint32_t(x);
  }
  check_total(rle.counts, h, w);
}

Rle from_uncompressed(const std::vector<uint32_t>& counts, uint32_t h, uint32_t w) {
  check_size(h, w);
  check_total(counts, h, w);
  return Rle{h, w, counts};
}

Rle from_polygon(const std::vector<double>& xy, uint32_t h, uint32_t w) {
  // maskApi's rleFrPoly (its exact rounding is what makes masks equal) without its arrays: it
  // walks the 5x upsampled boundary point by point and keeps the pairs of consecutive points
  // that cross a pixel column's centre. Here only the pairs that can cross are visited (one step
  // in five), with the same formulas, and maskApi's floating-point tests are done in integers.
  check_size(h, w);
  const size_t k = xy.size() / 2;
  for (size_t j = 0; j < 2 * k; ++j) check_polygon_coordinate(xy[j], j);
  if (k == 0) return Rle{h, w, {uint32_t(uint64_t(h) * w)}};
  constexpr int kScale = 5;
  // |kScale * coordinate| <= 5e7: the ints below, their differences and the int64 sums cannot
  // overflow.
  std::vector<int> x(k + 1), y(k + 1);
  for (size_t j = 0; j < k; ++j) x[j] = int(kScale * xy[j * 2] + .5);
  for (size_t j = 0; j < k; ++j) y[j] = int(kScale * xy[j * 2 + 1] + .5);
  x[k] = x[0];
  y[k] = y[0];
  // Crossings: at most one per 5 steps of an edge, plus one per edge, and only in the w columns
  // of the mask (the loops below stop at its sides): reserve that, up to a cap.
  size_t bound = 1;
  for (size_t j = 0; j < k; ++j) {
    const size_t length = size_t(std::max(std::abs(x[j + 1] - x[j]), std::abs(y[j + 1] - y[j])));
    bound += std::min<size_t>(length / kScale + 2, size_t(w) + 1);
  }
  // A boundary traced over the same columns again and again (a hostile zigzag) can have far more
  // crossings than the mask has positions: beyond the cap, pairs at one position are cancelled
  // whenever the list doubles, so memory follows the distinct positions, not the edge count.
  constexpr size_t kCompactAt = size_t(1) << 22;  // 16 MB of crossings
  size_t compact_at = kCompactAt;
  std::vector<uint32_t> a;
  a.reserve(std::min(bound, kCompactAt));
  // maskApi keeps consecutive points (u0, v0), (u1, v1), u1 != u0 (then |u1 - u0| = 1), when
  // xd = (min(u0, u1) + .5) / 5 - .5 is a whole number in [0, w - 1], at xd * h + yd with
  // yd = ceil(clamp((min(v0, v1) + .5) / 5 - .5, 0, h)). (X + .5) / 5 - .5 equals (X - 2) / 5
  // exactly when that is whole (every step is exact then), and is otherwise at least 0.2 from a
  // whole number: so xd is whole iff X = 5c + 2, and yd = ceil((Y - 2) / 5) clamped.
  // Consecutive points of two edges share u: only pairs within an edge count, and their order
  // does not matter (the crossings are sorted).
  const int64_t last_column = int64_t(w) - 1;
  const auto add = [&](int64_t column, int64_t y_min) {
    const int64_t row = y_min - 2;
    const uint32_t yd = row < 0 ? 0 : uint32_t(std::min<int64_t>(h, (row + kScale - 1) / kScale));
    a.push_back(uint32_t(column) * h + yd);  // <= w * h: fits (check_size)
    if (a.size() >= compact_at) {
      cancel_pairs(a);
      compact_at = std::max(kCompactAt, 2 * a.size());
    }
  };
  // Smallest X >= lo with X = 5c + 2, c >= 0.
  const auto first_crossing_x = [](int64_t lo) {
    lo = std::max<int64_t>(lo, 2);
    return lo + (((2 - lo) % kScale) + kScale) % kScale;
  };
  for (size_t j = 0; j < k; ++j) {
    int xs = x[j], xe = x[j + 1], ys = y[j], ye = y[j + 1];
    const int dx = std::abs(xe - xs), dy = std::abs(ys - ye);
    const bool flip = (dx >= dy && xs > xe) || (dx < dy && ys > ye);
    if (flip) {  // maskApi walks such edges backwards from the swapped end: the same points
      std::swap(xs, xe);
      std::swap(ys, ye);
    }
    if (dx >= dy) {
      // Points t = 0..dx at u = xs + t, v = int(ys + s * t + .5); pair (t - 1, t) has X = xs + t - 1.
      if (dx == 0) continue;  // a repeated point: no pair
      const double s = double(ye - ys) / dx;
      const auto v = [&](int t) { return int(ys + s * t + .5); };
      for (int64_t X = first_crossing_x(xs); X <= int64_t(xs) + dx - 1; X += kScale) {
        const int64_t column = (X - 2) / kScale;
        if (column > last_column) break;
        const int t = int(X - xs + 1);
        add(column, std::min(v(t - 1), v(t)));
      }
    } else {
      // Points t = 0..dy at v = ys + t, u(t) = int(xs + s * t + .5): monotonic in t, changing by
      // at most 1 per step (|s| < 1). For each X = 5c + 2 between the ends, the pair where u
      // passes between X and X + 1 is found from an estimate, checked with the same formula.
      const double s = double(xe - xs) / dy;
      if (s == 0) continue;  // u never changes
      const auto u = [&](int64_t t) { return int(xs + s * double(t) + .5); };
      const int u_first = u(0), u_last = u(dy);
      const int64_t lo = std::min(u_first, u_last), hi = std::max(u_first, u_last);  // X in [lo, hi - 1]
      for (int64_t X = first_crossing_x(lo); X <= hi - 1; X += kScale) {
        const int64_t column = (X - 2) / kScale;
        if (column > last_column) break;
        // reached(t): u(t) has passed to the far side of X (X + 1 going up, X going down).
        const auto reached = [&](int64_t t) { return s > 0 ? u(t) >= X + 1 : u(t) <= X; };
        int64_t t = int64_t(std::ceil((double(X) + .5 - xs) / s));
        t = std::clamp<int64_t>(t, 1, dy);
        while (t > 1 && reached(t - 1)) --t;
        while (!reached(t)) ++t;  // ends: reached(dy) holds
        add(column, ys + t - 1);  // min(v(t - 1), v(t))
      }
    }
  }
  // Sorted crossing positions toggle the mask: their differences are the runs (empty runs merge).
  a.push_back(uint32_t(uint64_t(h) * w));
  std::sort(a.begin(), a.end());
  uint32_t previous = 0;
  for (uint32_t& value : a) {
    const uint32_t t = value;
    value -= previous;
    previous = t;
  }
  Rle rle{h, w, {}};
  rle.counts.reserve(a.size());
  size_t j = 0;
  rle.counts.push_back(a[j++]);
  while (j < a.size()) {
    if (a[j] > 0) {
      rle.counts.push_back(a[j++]);
    } else {
      ++j;
      if (j < a.size()) rle.counts.back() += a[j++];
    }
  }
  return rle;
}

Rle from_polygons(const std::vector<std::vector<double>>& polygons, uint32_t h, uint32_t w) {
  if (polygons.empty()) throw InputError("empty polygon list");
  if (polygons[0].size() == 4) {
    throw InputError("first polygon has 4 values: pycocotools takes it for a box and fails");
  }
  if (polygons[0].size() < 4) {
    throw InputError("first polygon has fewer than 6 values (pycocotools: input type is not supported)");
  }
  if (polygons.size() == 1) return from_polygon(polygons[0], h, w);  // merge() would copy it
  std::vector<Rle> parts;
  parts.reserve(polygons.size());
  for (const auto& polygon : polygons) parts.push_back(from_polygon(polygon, h, w));
  return merge(parts, false);
}

Rle from_box(const std::array<double, 4>& box, uint32_t h, uint32_t w) {
  // Clamping moves only parts of the sides that lie beyond every image (whose sides are far below
  // the limit): an axis-aligned box keeps its crossings inside [0, w) x [0, h], so its mask.
  const auto clamp = [](double v) {
    return std::isnan(v) ? v : std::clamp(v, -kMaxPolygonCoordinate, kMaxPolygonCoordinate);
  };
  const double xs = clamp(box[0]), xe = clamp(box[0] + box[2]), ys = clamp(box[1]), ye = clamp(box[1] + box[3]);
  return from_polygon({xs, ys, xs, ye, xe, ye, xe, ys}, h, w);
}

Rle merge(const std::vector<Rle>& masks, bool intersect) {
  if (masks.empty()) return Rle{};
  if (masks.size() == 1) return masks[0];
  const uint32_t h = masks[0].h, w = masks[0].w;
  std::vector<uint32_t> acc = masks[0].counts, out;
  for (size_t i = 1; i < masks.size(); ++i) {
    const Rle& b = masks[i];
    if (b.h != h || b.w != w) return Rle{};
    // Walk both run lists together; emit a run whenever the combined value flips.
    out.clear();
    const std::vector<uint32_t>& ac = acc;
    uint32_t ca = ac.empty() ? 0 : ac[0], cb = b.counts.empty() ? 0 : b.counts[0];
    bool va = false, vb = false, v = false;
    size_t ia = 1, ib = 1;
    uint32_t cc = 0;
    uint64_t remaining = 1;
    while (remaining > 0) {
      const uint32_t c = std::min(ca, cb);
      cc += c;
      remaining = 0;
      ca -= c;
      if (!ca && ia < ac.size()) {
        ca = ac[ia++];
        va = !va;
      }
      remaining += ca;
      cb -= c;
      if (!cb && ib < b.counts.size()) {
        cb = b.counts[ib++];
        vb = !vb;
      }
      remaining += cb;
      const bool vp = v;
      v = intersect ? (va && vb) : (va || vb);
      if (vp != v || remaining == 0) {
        out.push_back(cc);
        cc = 0;
      }
    }
    acc.swap(out);
  }
  return Rle{h, w, acc};
}

uint64_t area(const Rle& rle) {
  uint64_t total = 0;
  for (size_t i = 1; i < rle.counts.size(); i += 2) total += rle.counts[i];
  return total;
}

std::array<double, 4> to_bbox(const Rle& rle) {
  const size_t m = rle.counts.size() / 2 * 2;  // a trailing run of 0s does not matter
  if (m == 0 || rle.h == 0) return {0, 0, 0, 0};
  const uint32_t h = rle.h;
  // Positions split into column and row by a multiplication with 1/h, corrected to the exact
  // quotient: an integer division per run was most of the cost (one call per result mask).
  const double inverse = 1.0 / h;
  const auto column_of = [&](uint32_t t) {
    uint32_t q = uint32_t(double(t) * inverse);
    if (uint64_t(q) * h > t) {
      --q;
    } else if ((uint64_t(q) + 1) * h <= t) {
      ++q;
    }
    return q;
  };
  uint32_t xs = rle.w, ys = h, xe = 0, ye = 0, cc = 0;
  bool any = false;
  for (size_t j = 0; j < m; j += 2) {
    cc += rle.counts[j];
    const uint32_t length = rle.counts[j + 1];
    // An empty 1-run (possible in uncompressed or hand-written counts, never from encode) holds no
    // pixel; maskApi would take the pixel before or after it, even one past the mask.
    if (length == 0) continue;
    any = true;
    const uint32_t first = cc, last = cc + length - 1;
    cc += length;
    const uint32_t x0 = column_of(first), x1 = column_of(last);
    if (x0 < x1) {  // the run wraps into a later column: it covers the full height
      ys = 0;
      ye = h - 1;
    }
    xs = std::min(xs, x0);
    xe = std::max(xe, x1);
    ys = std::min(ys, first - x0 * h);
    ye = std::max(ye, last - x1 * h);
  }
  if (!any) return {0, 0, 0, 0};
  return {double(xs), double(ys), double(xe - xs + 1), double(ye - ys + 1)};
}

uint64_t intersection_area(const Rle& a, const Rle& b) {
  // The foreground intervals [begin, end) of both, walked together; a list that ends ends it.
  struct Intervals {
    const std::vector<uint32_t>& counts;
    size_t next = 0;
    uint64_t position = 0, begin = 0, end = 0;
    bool advance() {
      if (next + 1 >= counts.size()) return false;  // no 1-run left
      begin = position + counts[next];
      end = begin + counts[next + 1];
      position = end;
      next += 2;
      return true;
    }
  };
  Intervals x{a.counts}, y{b.counts};
  bool more = x.advance() && y.advance();
  uint64_t inter = 0;
  while (more) {
    const uint64_t lo = std::max(x.begin, y.begin), hi = std::min(x.end, y.end);
    if (hi > lo) inter += hi - lo;
    more = x.end < y.end ? x.advance() : y.advance();
  }
  return inter;
}

double mask_iou(const Rle& dt, const Rle& gt, bool gt_is_crowd, uint64_t dt_area, uint64_t gt_area) {
  if (dt.h != gt.h || dt.w != gt.w) return -1;
  const uint64_t inter = intersection_area(dt, gt);
  if (inter == 0) return 0;
  // maskApi's union counts pixels in either mask: the same integer as dt + gt - both.
  const uint64_t uni = gt_is_crowd ? dt_area : dt_area + gt_area - inter;
  return double(inter) / double(uni);
}

double mask_iou(const Rle& dt, const Rle& gt, bool gt_is_crowd) {
  return mask_iou(dt, gt, gt_is_crowd, area(dt), area(gt));
}

double iou(const Rle& dt, const Rle& gt, bool gt_is_crowd) {
  // maskApi only looks at the masks when their boxes overlap (which is also what gives -1 for
  // mismatched sizes only then).
  if (box_iou(to_bbox(dt), to_bbox(gt), gt_is_crowd) <= 0) return 0;
  return mask_iou(dt, gt, gt_is_crowd);
}

double box_iou(const std::array<double, 4>& dt, const std::array<double, 4>& gt, bool gt_is_crowd) {
  // Same operation order as maskApi's bbIou, so results are equal to the last bit.
  const double w = std::fmin(dt[2] + dt[0], gt[2] + gt[0]) - std::fmax(dt[0], gt[0]);
  if (w <= 0) return 0;
  const double h = std::fmin(dt[3] + dt[1], gt[3] + gt[1]) - std::fmax(dt[1], gt[1]);
  if (h <= 0) return 0;
  const double inter = w * h;
  const double uni = gt_is_crowd ? dt[2] * dt[3] : dt[2] * dt[3] + gt[2] * gt[3] - inter;
  return inter / uni;
}

}  // namespace instseg::coco
