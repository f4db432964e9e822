#include "instseg/evaluation/coco_evaluator.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <numeric>

#include "instseg/common/parallel_for.h"
#include "instseg/errors.h"

namespace instseg::evaluation {
namespace {

constexpr int T = kNumIouThresholds, R = kNumRecallPoints, A = kNumAreaRanges, M = kNumMaxDets;
constexpr size_t kMaxDetsPerCell = 100;  // COCOeval keeps the 100 best per (image, category)
// COCOeval.params.areaRng: [0, 1e5^2], [0, 32^2], [32^2, 96^2], [96^2, 1e5^2], inclusive ends.
constexpr double kAreaRanges[A][2] = {{0, 1e10}, {0, 1024}, {1024, 9216}, {9216, 1e10}};

// numpy.linspace(start, stop, n): start + i * step, the last value set to stop exactly.
template <size_t N>
std::array<double, N> linspace(double start, double stop) {
  std::array<double, N> values{};
  const double step = (stop - start) / double(N - 1);
  for (size_t i = 0; i < N; ++i) values[i] = double(i) * step + start;
  values[N - 1] = stop;
  return values;
}

// Matching results of one (image, category): its detections sorted by score (at most 100), and
// per area range and detection one bit per IoU threshold for "matched" and "ignored".
constexpr uint32_t kNoCell = UINT32_MAX;  // an (image, category) without GT or detections

struct Cell {
  std::vector<double> scores;
  std::vector<uint16_t> matched;  // [A][D]
  std::vector<uint16_t> ignored;  // [A][D]
  std::array<int64_t, A> num_gt{};  // GT not ignored, per area range
};

// The detections' masks: decoded in Detection::mask, or compressed in a CompressedResults.
class Masks {
 public:
  virtual ~Masks() = default;
  virtual bool has(size_t i) const = 0;
  virtual bool has_size_of(size_t i, const coco::Image& image) const = 0;  // a mask i has
  // Detection i's mask; decoded into `scratch` (and `text`) when it must be.
  virtual const coco::Rle& get(size_t i, coco::Rle& scratch, std::string& text) const = 0;
};

class DecodedMasks final : public Masks {
 public:
  explicit DecodedMasks(const std::vector<coco::Detection>& dets) : dets_(dets) {}
  bool has(size_t i) const override { return dets_[i].mask.has_value(); }
  bool has_size_of(size_t i, const coco::Image& image) const override {
    return dets_[i].mask->h == image.height && dets_[i].mask->w == image.width;
  }
  const coco::Rle& get(size_t i, coco::Rle&, std::string&) const override { return *dets_[i].mask; }

 private:
  const std::vector<coco::Detection>& dets_;
};

class CompressedMasks final : public Masks {
 public:
  explicit CompressedMasks(const coco::CompressedResults& results) : results_(results) {}
  bool has(size_t i) const override { return results_.has_mask(i); }
  // Read against the ground truth, which checked the sizes.
  bool has_size_of(size_t, const coco::Image&) const override { return true; }
  const coco::Rle& get(size_t i, coco::Rle& scratch, std::string& text) const override {
    results_.decode_mask(i, scratch, text);
    return scratch;
  }

 private:
  const coco::CompressedResults& results_;
};

struct Prepared {
  std::vector<std::array<double, 4>> boxes;  // per detection, for bbox IoU
  std::vector<double> areas;                 // per detection, for the area ranges
};

[[noreturn]] void fail(size_t index, const std::string& field, const std::string& what) {
  throw InputError("detections[" + std::to_string(index) + "]." + field + ": " + what);
}

Prepared prepare_detections(const coco::Dataset& gt, const std::vector<coco::Detection>& dets, const Masks& masks,
                            IouType type) {
  Prepared p;
  p.boxes.resize(dets.size());
  p.areas.resize(dets.size());
  // pycocotools' loadRes: when the first result has a box, areas are box areas (also for segm),
  // otherwise mask pixel counts, and mask-only results get the mask's box.
  const bool box_areas = !dets.empty() && dets[0].has_bbox;
  coco::Rle scratch;
  std::string text;
  for (size_t i = 0; i < dets.size(); ++i) {
    const coco::Detection& d = dets[i];
    const int64_t image = gt.image_index(d.image_id);
    if (image < 0) fail(i, "image_id", "image id " + std::to_string(d.image_id) + " is not in the ground truth");
    if (gt.category_index(d.category_id) < 0) {
      fail(i, "category_id", "category id " + std::to_string(d.category_id) + " is not in the ground truth");
    }
    if (!std::isfinite(d.score)) fail(i, "score", "not a finite number");
    const coco::Image& im = gt.images()[size_t(image)];
    const bool has_mask = masks.has(i);
    if (has_mask && !masks.has_size_of(i, im)) fail(i, "mask", "size differs from the image size");
    if (box_areas && !d.has_bbox) fail(i, "bbox", "missing, but the first detection has one");
    if (!d.has_bbox && !has_mask) fail(i, "mask", "a detection needs a box or a mask");
    if (!box_areas && !has_mask) fail(i, "mask", "missing, but the first detection is mask-only");
    if (type == IouType::kSegm && !has_mask && !d.has_bbox) fail(i, "mask", "missing for segm evaluation");
    if (d.has_bbox) p.boxes[i] = d.bbox;
    if (box_areas) p.areas[i] = d.bbox[2] * d.bbox[3];
    if (!d.has_bbox || !box_areas) {  // mask-only results: their box and area come from the mask
      const coco::Rle& mask = masks.get(i, scratch, text);
      if (!d.has_bbox) p.boxes[i] = coco::to_bbox(mask);
      if (!box_areas) p.areas[i] = double(coco::area(mask));
    }
  }
  return p;
}

// Stable grouping of item indices by key (counting sort): items of one key keep their order.
struct Groups {
  std::vector<size_t> start;  // [keys + 1]
  std::vector<size_t> items;
  size_t size(size_t key) const { return start[key + 1] - start[key]; }
  const size_t* begin(size_t key) const { return items.data() + start[key]; }
};

Groups group_by(const std::vector<size_t>& keys, size_t num_keys) {
  Groups g;
  g.start.assign(num_keys + 1, 0);
  for (size_t key : keys) ++g.start[key + 1];
  std::partial_sum(g.start.begin(), g.start.end(), g.start.begin());
  g.items.resize(keys.size());
  std::vector<size_t> fill(g.start.begin(), g.start.end() - 1);
  for (size_t i = 0; i < keys.size(); ++i) g.items[fill[keys[i]]++] = i;
  return g;
}

// COCOeval.evaluateImg for one (image, category), all area ranges at once.
// ious: [D][G] with GT in file order; gt_* in file order; dets sorted by score.
void match_cell(const std::vector<double>& ious, const std::vector<char>& gt_crowd,
                const std::vector<double>& gt_area, const std::vector<char>& gt_id_nonzero,
                const std::vector<double>& dt_area, Cell& cell) {
  const size_t D = dt_area.size(), G = gt_area.size();
  cell.matched.assign(A * D, 0);
  cell.ignored.assign(A * D, 0);
  std::vector<size_t> order(G);
  std::vector<char> ignore(G), gt_taken(G);
  for (int a = 0; a < A; ++a) {
    const double lo = kAreaRanges[a][0], hi = kAreaRanges[a][1];
    // GT sorted with the ignored ones last (stable), as evaluateImg's argsort of _ignore.
    size_t n = 0;
    for (int pass = 0; pass < 2; ++pass) {
      for (size_t g = 0; g < G; ++g) {
        const bool ig = gt_crowd[g] || gt_area[g] < lo || gt_area[g] > hi;
        ignore[g] = ig;
        if (ig == bool(pass)) order[n++] = g;
      }
    }
    cell.num_gt[a] = int64_t(std::count(ignore.begin(), ignore.end(), 0));
    uint16_t* matched = cell.matched.data() + a * D;
    uint16_t* ignored = cell.ignored.data() + a * D;
    for (int t = 0; t < T && G > 0; ++t) {
      std::fill(gt_taken.begin(), gt_taken.end(), 0);
      const double threshold = std::min(iou_thresholds()[t], 1 - 1e-10);
      for (size_t d = 0; d < D; ++d) {
        double best = threshold;
        int64_t m = -1;
        for (size_t gi = 0; gi < G; ++gi) {
          const size_t g = order[gi];
          if (gt_taken[g] && !gt_crowd[g]) continue;  // a crowd absorbs any number of results
          if (m > -1 && !ignore[size_t(m)] && ignore[g]) break;  // matched a regular GT already
          const double v = ious[d * G + g];
          if (v < best) continue;
          best = v;  // >=: among equal IoUs the later GT wins
          m = int64_t(g);
        }
        if (m == -1) continue;
        gt_taken[size_t(m)] = 1;
        if (ignore[size_t(m)]) ignored[d] |= uint16_t(1u << t);
        // COCOeval stores the GT's id as the match, and tests it for != 0: a GT with id 0 counts
        // as unmatched there; kept for parity.
        if (gt_id_nonzero[size_t(m)]) matched[d] |= uint16_t(1u << t);
      }
    }
    for (size_t d = 0; d < D; ++d) {
      if (dt_area[d] < lo || dt_area[d] > hi) ignored[d] |= uint16_t(~matched[d] & ((1u << T) - 1));
    }
  }
}

// COCOeval.accumulate for one category; writes its slices of precision and recall.
// cell_of: per (image, category) key, the index into cells, or kNoCell.
void accumulate_category(const std::vector<Cell>& cells, const std::vector<uint32_t>& cell_of, size_t num_images,
                         size_t K, size_t k, std::vector<double>& precision, std::vector<double>& recall) {
  struct Item {
    double score;
    uint32_t cell;  // index into cells
    uint32_t rank;  // position among the cell's detections
  };
  std::vector<Item> items;
  std::array<int64_t, A> num_gt{};
  bool any = false;
  for (size_t i = 0; i < num_images; ++i) {
    const uint32_t index = cell_of[i * K + k];
    if (index == kNoCell) continue;
    const Cell& c = cells[index];
    any = true;
    for (int a = 0; a < A; ++a) num_gt[a] += c.num_gt[a];
    for (size_t r = 0; r < c.scores.size(); ++r) items.push_back({c.scores[r], index, uint32_t(r)});
  }
  if (!any) return;
  // Image order then rank breaks score ties, as COCOeval's mergesort over concatenated images.
  std::stable_sort(items.begin(), items.end(), [](const Item& x, const Item& y) { return x.score > y.score; });
  const auto& rec_thr = recall_thresholds();
  std::vector<double> rc, pr;
  std::vector<uint16_t> tp_bits, fp_bits;
  for (int m = 0; m < M; ++m) {
    const uint32_t max_det = uint32_t(max_dets()[m]);
    for (int a = 0; a < A; ++a) {
      if (num_gt[a] == 0) continue;
      const double npig = double(num_gt[a]);
      tp_bits.clear();
      fp_bits.clear();
      for (const Item& it : items) {
        if (it.rank >= max_det) continue;
        const Cell& c = cells[it.cell];
        const size_t D = c.scores.size();
        const uint16_t mt = c.matched[a * D + it.rank], ig = c.ignored[a * D + it.rank];
        tp_bits.push_back(uint16_t(mt & ~ig));
        fp_bits.push_back(uint16_t(~mt & ~ig));
      }
      const size_t nd = tp_bits.size();
      rc.resize(nd);
      pr.resize(nd);
      for (int t = 0; t < T; ++t) {
        double tp = 0, fp = 0;
        for (size_t i = 0; i < nd; ++i) {
          tp += (tp_bits[i] >> t) & 1;
          fp += (fp_bits[i] >> t) & 1;
          rc[i] = tp / npig;
          pr[i] = tp / (fp + tp + std::numeric_limits<double>::epsilon());  // np.spacing(1)
        }
        recall[((size_t(t) * K + k) * A + a) * M + m] = nd ? rc[nd - 1] : 0;
        for (size_t i = nd; i-- > 1;) pr[i - 1] = std::max(pr[i - 1], pr[i]);
        // np.searchsorted(rc, thresholds, side="left"); points past the last recall stay 0.
        size_t pos = 0;
        for (int r = 0; r < R; ++r) {
          while (pos < nd && rc[pos] < rec_thr[r]) ++pos;
          precision[(((size_t(t) * R + r) * K + k) * A + a) * M + m] = pos < nd ? pr[pos] : 0;
        }
      }
    }
  }
}

}  // namespace

const char* to_string(IouType type) { return type == IouType::kBbox ? "bbox" : "segm"; }

void EvalOptions::validate() const {
  if (num_threads < 0) throw ConfigError("eval.num_threads must be >= 0, got " + std::to_string(num_threads));
}

const std::array<double, kNumIouThresholds>& iou_thresholds() {
  static const auto values = linspace<kNumIouThresholds>(0.5, 0.95);
  return values;
}

const std::array<double, kNumRecallPoints>& recall_thresholds() {
  static const auto values = linspace<kNumRecallPoints>(0.0, 1.0);
  return values;
}

const std::array<const char*, kNumAreaRanges>& area_range_labels() {
  static const std::array<const char*, kNumAreaRanges> labels{"all", "small", "medium", "large"};
  return labels;
}

const std::array<int, kNumMaxDets>& max_dets() {
  static const std::array<int, kNumMaxDets> values{1, 10, 100};
  return values;
}

double EvalResult::precision_at(int t, int r, int k, int a, int m) const {
  return precision[(((size_t(t) * R + r) * category_ids.size() + k) * A + a) * M + m];
}

double EvalResult::recall_at(int t, int k, int a, int m) const {
  return recall[((size_t(t) * category_ids.size() + k) * A + a) * M + m];
}

double EvalResult::mean_precision(int t, int k, int a, int m) const {
  double sum = 0;
  size_t n = 0;
  const int K = num_categories();
  for (int ti = t < 0 ? 0 : t; ti < (t < 0 ? T : t + 1); ++ti) {
    for (int r = 0; r < R; ++r) {
      for (int ki = k < 0 ? 0 : k; ki < (k < 0 ? K : k + 1); ++ki) {
        const double v = precision_at(ti, r, ki, a, m);
        if (v > -1) {
          sum += v;
          ++n;
        }
      }
    }
  }
  return n ? sum / double(n) : -1;
}

double EvalResult::mean_recall(int t, int k, int a, int m) const {
  double sum = 0;
  size_t n = 0;
  const int K = num_categories();
  for (int ti = t < 0 ? 0 : t; ti < (t < 0 ? T : t + 1); ++ti) {
    for (int ki = k < 0 ? 0 : k; ki < (k < 0 ? K : k + 1); ++ki) {
      const double v = recall_at(ti, ki, a, m);
      if (v > -1) {
        sum += v;
        ++n;
      }
    }
  }
  return n ? sum / double(n) : -1;
}

namespace {

EvalResult evaluate_with(const coco::Dataset& gt, const std::vector<coco::Detection>& dets, const Masks& masks,
                         IouType type, const EvalOptions& options) {
  options.validate();
  const Prepared prepared = prepare_detections(gt, dets, masks, type);

  // COCOeval's axes: images and categories sorted by id.
  const size_t I = gt.images().size(), K = gt.categories().size();
  std::vector<size_t> image_order(I), category_order(K);
  std::iota(image_order.begin(), image_order.end(), 0);
  std::iota(category_order.begin(), category_order.end(), 0);
  std::sort(image_order.begin(), image_order.end(),
            [&](size_t x, size_t y) { return gt.images()[x].id < gt.images()[y].id; });
  std::sort(category_order.begin(), category_order.end(),
            [&](size_t x, size_t y) { return gt.categories()[x].id < gt.categories()[y].id; });
  std::vector<size_t> image_rank(I), category_rank(K);
  for (size_t i = 0; i < I; ++i) image_rank[image_order[i]] = i;
  for (size_t k = 0; k < K; ++k) category_rank[category_order[k]] = k;

  EvalResult result;
  result.iou_type = type;
  result.num_gt.assign(K, 0);
  for (size_t k = 0; k < K; ++k) {
    result.category_ids.push_back(gt.categories()[category_order[k]].id);
    result.category_names.push_back(gt.categories()[category_order[k]].name);
  }

  const auto& annotations = gt.annotations();
  std::vector<size_t> gt_keys(annotations.size()), dt_keys(dets.size());
  for (size_t i = 0; i < annotations.size(); ++i) {
    const auto& a = annotations[i];
    const size_t k = category_rank[size_t(gt.category_index(a.category_id))];
    gt_keys[i] = image_rank[size_t(gt.image_index(a.image_id))] * K + k;
    if (!a.iscrowd) ++result.num_gt[k];
  }
  for (size_t i = 0; i < dets.size(); ++i) {
    dt_keys[i] = image_rank[size_t(gt.image_index(dets[i].image_id))] * K +
                 category_rank[size_t(gt.category_index(dets[i].category_id))];
  }
  const Groups gt_groups = group_by(gt_keys, I * K), dt_groups = group_by(dt_keys, I * K);

  // Cells only where COCOeval has an evalImgs entry (GT or detections): most of images x
  // categories is empty, and memory is slow to come by.
  std::vector<uint32_t> cell_of(I * K, kNoCell);
  uint32_t present = 0;
  for (size_t key = 0; key < I * K; ++key) {
    if (gt_groups.size(key) > 0 || dt_groups.size(key) > 0) cell_of[key] = present++;
  }
  std::vector<Cell> cells(present);
  const int threads = instseg::resolve_threads(options.num_threads);
  instseg::parallel_for(I, threads, [&](size_t i) {
    std::vector<size_t> dt;
    std::vector<coco::Rle> gt_masks, box_masks;  // box_masks: also decoded results' masks
    std::string text;
    std::vector<const coco::Rle*> dt_masks;  // the results' own masks are not copied
    std::vector<uint64_t> gt_pixels, dt_pixels;  // mask areas
    std::vector<std::array<double, 4>> gt_boxes, dt_boxes;
    std::vector<double> ious, gt_area, dt_area;
    std::vector<char> gt_crowd, gt_id_nonzero;
    for (size_t k = 0; k < K; ++k) {
      const size_t key = i * K + k;
      const size_t G = gt_groups.size(key);
      if (cell_of[key] == kNoCell) continue;
      Cell& cell = cells[cell_of[key]];
      dt.assign(dt_groups.begin(key), dt_groups.begin(key) + dt_groups.size(key));
      std::stable_sort(dt.begin(), dt.end(), [&](size_t x, size_t y) { return dets[x].score > dets[y].score; });
      if (dt.size() > kMaxDetsPerCell) dt.resize(kMaxDetsPerCell);
      const size_t D = dt.size();
      cell.scores.resize(D);
      dt_area.resize(D);
      for (size_t d = 0; d < D; ++d) {
        cell.scores[d] = dets[dt[d]].score;
        dt_area[d] = prepared.areas[dt[d]];
      }
      const size_t* g_index = gt_groups.begin(key);
      gt_area.resize(G);
      gt_crowd.resize(G);
      gt_id_nonzero.resize(G);
      gt_boxes.resize(G);
      for (size_t g = 0; g < G; ++g) {
        const auto& a = annotations[g_index[g]];
        gt_area[g] = a.area;
        gt_crowd[g] = a.iscrowd;
        gt_id_nonzero[g] = a.id != 0;
        gt_boxes[g] = a.bbox;
      }
      ious.assign(D * G, 0);
      if (type == IouType::kBbox) {
        for (size_t d = 0; d < D; ++d) {
          for (size_t g = 0; g < G; ++g) ious[d * G + g] = coco::box_iou(prepared.boxes[dt[d]], gt_boxes[g], gt_crowd[g]);
        }
      } else if (D > 0 && G > 0) {
        gt_masks.resize(G);
        gt_pixels.resize(G);
        for (size_t g = 0; g < G; ++g) {
          gt_masks[g] = gt.annotation_rle(g_index[g]);
          gt_boxes[g] = coco::to_bbox(gt_masks[g]);
          gt_pixels[g] = coco::area(gt_masks[g]);
        }
        dt_masks.resize(D);
        dt_boxes.resize(D);
        dt_pixels.resize(D);
        box_masks.resize(D);
        for (size_t d = 0; d < D; ++d) {
          const coco::Detection& det = dets[dt[d]];
          const coco::Image& im = gt.images()[image_order[i]];
          if (masks.has(dt[d])) {
            dt_masks[d] = &masks.get(dt[d], box_masks[d], text);
          } else {
            box_masks[d] = coco::from_box(det.bbox, im.height, im.width);
            dt_masks[d] = &box_masks[d];
          }
          dt_boxes[d] = coco::to_bbox(*dt_masks[d]);
          dt_pixels[d] = coco::area(*dt_masks[d]);
        }
        for (size_t d = 0; d < D; ++d) {
          for (size_t g = 0; g < G; ++g) {
            // maskApi's rleIou looks at the runs only where the masks' boxes overlap.
            if (coco::box_iou(dt_boxes[d], gt_boxes[g], gt_crowd[g]) > 0) {
              ious[d * G + g] = coco::mask_iou(*dt_masks[d], gt_masks[g], gt_crowd[g], dt_pixels[d], gt_pixels[g]);
            }
          }
        }
      }
      match_cell(ious, gt_crowd, gt_area, gt_id_nonzero, dt_area, cell);
    }
  });

  result.precision.assign(size_t(T) * R * K * A * M, -1);
  result.recall.assign(size_t(T) * K * A * M, -1);
  instseg::parallel_for(K, threads, [&](size_t k) {
    accumulate_category(cells, cell_of, I, K, k, result.precision, result.recall);
  });

  // COCOeval.summarize: AP over IoU 0.50:0.95, 0.50, 0.75 and area ranges; AR per max-dets.
  const auto threshold_index = [](double value) {
    for (int t = 0; t < T; ++t) {
      if (iou_thresholds()[t] == value) return t;
    }
    return -1;
  };
  auto& s = result.stats;
  s[0] = result.mean_precision(-1, -1, 0, 2);
  s[1] = result.mean_precision(threshold_index(.5), -1, 0, 2);
  s[2] = result.mean_precision(threshold_index(.75), -1, 0, 2);
  for (int a = 1; a < A; ++a) s[2 + a] = result.mean_precision(-1, -1, a, 2);
  for (int m = 0; m < M; ++m) s[6 + m] = result.mean_recall(-1, -1, 0, m);
  for (int a = 1; a < A; ++a) s[8 + a] = result.mean_recall(-1, -1, a, 2);
  return result;
}

}  // namespace

EvalResult evaluate(const coco::Dataset& gt, const std::vector<coco::Detection>& dets, IouType type,
                    const EvalOptions& options) {
  return evaluate_with(gt, dets, DecodedMasks(dets), type, options);
}

EvalResult evaluate(const coco::Dataset& gt, const coco::CompressedResults& results, IouType type,
                    const EvalOptions& options) {
  return evaluate_with(gt, results.detections(), CompressedMasks(results), type, options);
}

std::vector<std::string> summary_lines(const EvalResult& result) {
  struct Line {
    bool ap;
    const char* iou;
    int area;
    int max_det;
  };
  static const Line lines[12] = {{true, "0.50:0.95", 0, 2}, {true, "0.50", 0, 2},  {true, "0.75", 0, 2},
                                 {true, "0.50:0.95", 1, 2}, {true, "0.50:0.95", 2, 2}, {true, "0.50:0.95", 3, 2},
                                 {false, "0.50:0.95", 0, 0}, {false, "0.50:0.95", 0, 1}, {false, "0.50:0.95", 0, 2},
                                 {false, "0.50:0.95", 1, 2}, {false, "0.50:0.95", 2, 2}, {false, "0.50:0.95", 3, 2}};
  std::vector<std::string> out;
  char buffer[160];
  for (int i = 0; i < 12; ++i) {
    const Line& l = lines[i];
    std::snprintf(buffer, sizeof buffer, " %-18s %s @[ IoU=%-9s | area=%6s | maxDets=%3d ] = %0.3f",
                  l.ap ? "Average Precision" : "Average Recall", l.ap ? "(AP)" : "(AR)", l.iou,
                  area_range_labels()[l.area], max_dets()[l.max_det], result.stats[i]);
    out.emplace_back(buffer);
  }
  return out;
}

}  // namespace instseg::evaluation
