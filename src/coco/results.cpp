#include "instseg/coco/results.h"

#include <memory>

#include "coco/json_fields.h"
#include "coco/json_reader.h"
#include "coco/mapped_file.h"
#include "instseg/errors.h"

namespace instseg::coco {

using detail::Entry;
using detail::Field;
using detail::JsonReader;
using detail::JsonType;

std::vector<Detection> read_results(const std::string& path, const Dataset& ground_truth) {
  const detail::MappedFile file(path);
  return parse_results(file.text(), path, ground_truth);
}

namespace {

// Where a compressed mask is: its counts string in the file, or uncompressed runs kept decoded.
struct MaskRef {
  size_t counts_offset = 0;
  uint32_t h = 0, w = 0;
  bool present = false;
  std::unique_ptr<Rle> runs;  // a mask written as uncompressed runs (rare in results)
};

// Fields are checked in a fixed order, whatever their order in the file. With `compressed` set,
// the mask is only checked (decoded into a scratch) and located there instead of kept.
Detection read_result(JsonReader& in, const Entry& at, bool first_has_bbox, const Dataset& ground_truth,
                      MaskRef* compressed) {
  if (in.peek() != JsonType::kObject) detail::fail(at, "", "expected an object");
  Field<int64_t> image_id, category_id;
  Field<double> score;
  Field<std::array<double, 4>> bbox;
  Field<detail::SegmentationValue> segmentation;
  in.begin_object();
  for (std::string_view key; in.next_key(key);) {
    if (key == "segmentation") {
      detail::read_field(in, segmentation, detail::read_segmentation);
    } else if (key == "bbox") {
      detail::read_field(in, bbox, [](JsonReader& r) { return detail::read_box(r, "bbox"); });
    } else if (key == "score") {
      detail::read_field(in, score, [](JsonReader& r) { return detail::read_finite(r, "score"); });
    } else if (key == "image_id") {
      detail::read_field(in, image_id, [](JsonReader& r) { return detail::read_int(r, "image_id"); });
    } else if (key == "category_id") {
      detail::read_field(in, category_id, [](JsonReader& r) { return detail::read_int(r, "category_id"); });
    } else {
      in.skip();
    }
  }
  Detection d;
  d.image_id = image_id.get(at, "image_id");
  const int64_t image = ground_truth.image_index(d.image_id);
  if (image < 0) detail::fail(at, "image_id", "image id " + std::to_string(d.image_id) + " is not in the ground truth");
  d.category_id = category_id.get(at, "category_id");
  if (ground_truth.category_index(d.category_id) < 0) {
    detail::fail(at, "category_id", "category id " + std::to_string(d.category_id) + " is not in the ground truth");
  }
  d.score = score.get(at, "score");
  d.has_bbox = bbox.present;
  if (d.has_bbox) {
    d.bbox = bbox.get(at, "bbox");
  } else if (first_has_bbox) {
    detail::fail(at, "bbox", "missing, but the first result has one (pycocotools needs it on all)");
  }
  if (segmentation.present) {
    segmentation.get(at, "segmentation");
    if (segmentation.value.kind != Segmentation::Kind::kRle) {
      detail::fail(at, "segmentation", "results masks must be RLE {size, counts}");
    }
    const Image& im = ground_truth.images()[size_t(image)];
    try {
      if (!compressed) {
        d.mask.emplace();
        detail::decode_rle(segmentation.value, im.height, im.width, *d.mask);
      } else {
        Rle check;  // freed at once: its memory serves the next entry's check
        detail::decode_rle(segmentation.value, im.height, im.width, check);
        *compressed = {segmentation.value.counts_offset, im.height, im.width, true, nullptr};
        if (!segmentation.value.counts_is_text) compressed->runs = std::make_unique<Rle>(std::move(check));
      }
    } catch (const detail::FieldError& e) {
      detail::fail(at, e.field, e.what);
    }
  } else if (!d.has_bbox) {
    detail::fail(at, "", "needs a \"bbox\" or a \"segmentation\"");
  }
  return d;
}

// Whether the entry in `in` is an object with a "bbox" key: pycocotools' loadRes decides on the
// first result whether results are boxes.
bool has_bbox_key(JsonReader& in) {
  if (in.peek() != JsonType::kObject) {
    in.skip();
    return false;
  }
  bool found = false;
  in.begin_object();
  for (std::string_view key; in.next_key(key);) {
    found = found || key == "bbox";
    in.skip();
  }
  return found;
}

}  // namespace

namespace {

// The entries of a results list, split and read on all cores (a file can hold millions of masks):
// resize(count) sizes the outputs, then read(entry_reader, index, first_has_bbox) reads each.
template <typename Resize, typename Read>
void read_entries(std::string_view json_text, const std::string& source, Resize&& resize, Read&& read) {
  JsonReader in(json_text, source);
  if (in.peek() != JsonType::kArray) throw InputError(source + ": expected a JSON list of results");
  size_t end = 0;
  const std::vector<detail::Span> elements = detail::split_array(json_text, in.offset(), source, end);
  in.seek(end);
  in.finish();
  if (elements.empty()) throw InputError(source + ": the results list is empty (nothing to evaluate)");
  JsonReader first(json_text, source, elements[0].begin, elements[0].end);
  const bool first_has_bbox = has_bbox_key(first);
  resize(elements.size());
  detail::for_each_entry(json_text, elements, source,
                         [&](JsonReader& entry, size_t i) { read(entry, i, first_has_bbox); });
}

}  // namespace

std::vector<Detection> parse_results(std::string_view json_text, const std::string& source,
                                     const Dataset& ground_truth) {
  std::vector<Detection> detections;
  read_entries(
      json_text, source, [&](size_t count) { detections.resize(count); },
      [&](JsonReader& entry, size_t i, bool first_has_bbox) {
        detections[i] = read_result(entry, {source, "results", i}, first_has_bbox, ground_truth, nullptr);
      });
  return detections;
}

struct CompressedResults::Storage {
  explicit Storage(const std::string& path) : path(path), file(path) {}
  std::string path;
  detail::MappedFile file;
  std::vector<MaskRef> masks;  // per detection
};

CompressedResults::CompressedResults(std::unique_ptr<Storage> storage) : storage_(std::move(storage)) {}
CompressedResults::CompressedResults(CompressedResults&&) noexcept = default;
CompressedResults& CompressedResults::operator=(CompressedResults&&) noexcept = default;
CompressedResults::~CompressedResults() = default;

CompressedResults CompressedResults::read(const std::string& path, const Dataset& ground_truth) {
  CompressedResults results(std::make_unique<Storage>(path));
  Storage& storage = *results.storage_;
  read_entries(
      storage.file.text(), path,
      [&](size_t count) {
        results.detections_.resize(count);
        storage.masks.resize(count);
      },
      [&](JsonReader& entry, size_t i, bool first_has_bbox) {
        results.detections_[i] = read_result(entry, {path, "results", i}, first_has_bbox, ground_truth, &storage.masks[i]);
      });
  return results;
}

bool CompressedResults::has_mask(size_t i) const { return storage_->masks.at(i).present; }

void CompressedResults::decode_mask(size_t i, Rle& out, std::string& text) const {
  const MaskRef& ref = storage_->masks.at(i);
  if (!ref.present) throw InputError(storage_->path + ": results[" + std::to_string(i) + "] has no mask");
  if (ref.runs) {
    out = *ref.runs;
    return;
  }
  // Checked when read: decoding again cannot fail.
  JsonReader in(storage_->file.text(), storage_->path, ref.counts_offset);
  const std::string_view counts = in.string(text);
  from_string(counts.data(), counts.size(), ref.h, ref.w, out);
}

}  // namespace instseg::coco
