#include "instseg/coco/results.h"

#include <algorithm>
#include <charconv>
#include <cmath>

#include "coco/json_fields.h"
#include "coco/json_reader.h"
#include "coco/mapped_file.h"
#include "instseg/common/atomic_file.h"
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

// Fields are checked in a fixed order, whatever their order in the file.
Detection read_result(JsonReader& in, const Entry& at, bool first_has_bbox, const Dataset& ground_truth) {
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
      d.mask = detail::to_segmentation(std::move(segmentation.value), im.height, im.width).rle;
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

std::vector<Detection> parse_results(std::string_view json_text, const std::string& source,
                                     const Dataset& ground_truth) {
  // The list is split into entries by a quick scan, then entries are read on all cores: a results
  // file can hold millions of masks.
  JsonReader in(json_text, source);
  if (in.peek() != JsonType::kArray) throw InputError(source + ": expected a JSON list of results");
  size_t end = 0;
  const std::vector<detail::Span> elements = detail::split_array(json_text, in.offset(), source, end);
  in.seek(end);
  in.finish();
  if (elements.empty()) throw InputError(source + ": the results list is empty (nothing to evaluate)");
  JsonReader first(json_text, source, elements[0].begin, elements[0].end);
  const bool first_has_bbox = has_bbox_key(first);
  std::vector<Detection> detections(elements.size());
  detail::for_each_entry(json_text, elements, source, [&](JsonReader& entry, size_t i) {
    detections[i] = read_result(entry, {source, "results", i}, first_has_bbox, ground_truth);
  });
  return detections;
}

namespace {

// Shortest text that reads back as the same double (std::to_chars), with ".0" on integral values
// and null for non-finite ones, as nlohmann::json writes them.
void write_number(std::string& out, double value) {
  if (!std::isfinite(value)) {
    out += "null";
    return;
  }
  char buffer[32];
  const auto end = std::to_chars(buffer, buffer + sizeof buffer, value).ptr;
  out.append(buffer, end);
  if (std::find_if(buffer, end, [](char c) { return c == '.' || c == 'e'; }) == end) out += ".0";
}

// Compressed counts use '0'..'o', which holds the backslash: the one character to escape.
void write_counts(std::string& out, const std::string& counts) {
  out += '"';
  for (char c : counts) {
    if (c == '\\') out += '\\';
    out += c;
  }
  out += '"';
}

}  // namespace

void write_results(const std::string& path, const std::vector<Detection>& detections) {
  // Keys in sorted order, as the nlohmann::json writer used before (files compare equal).
  std::string out = "[";
  for (const Detection& d : detections) {
    if (out.size() > 1) out += ',';
    out += '{';
    if (d.has_bbox) {
      out += "\"bbox\":[";
      for (size_t i = 0; i < 4; ++i) {
        if (i) out += ',';
        write_number(out, d.bbox[i]);
      }
      out += "],";
    }
    out += "\"category_id\":" + std::to_string(d.category_id) + ",\"image_id\":" + std::to_string(d.image_id) +
           ",\"score\":";
    write_number(out, d.score);
    if (d.mask) {
      out += ",\"segmentation\":{\"counts\":";
      write_counts(out, to_string(*d.mask));
      out += ",\"size\":[" + std::to_string(d.mask->h) + "," + std::to_string(d.mask->w) + "]}";
    }
    out += '}';
  }
  out += ']';
  write_file_atomically(path, [&](std::ostream& stream) { stream << out; });
}

}  // namespace instseg::coco
