#include "instseg/coco/dataset.h"

#include <string>
#include <unordered_map>
#include <vector>

#include "coco/json_fields.h"
#include "coco/json_reader.h"
#include "coco/mapped_file.h"
#include "instseg/errors.h"

namespace instseg::coco {

using detail::Entry;
using detail::Field;
using detail::JsonReader;
using detail::JsonType;
using detail::Span;

namespace {

// A top-level member of the instances file, found by one pass over the document.
struct Member {
  bool present = false;
  JsonType type = JsonType::kNull;
  Span span;                       // the value
  std::vector<Span> elements;      // when it is the annotations list: its entries
};

struct Members {
  Member images, categories, annotations;
};

Members scan_members(std::string_view text, const std::string& source) {
  JsonReader in(text, source);
  if (in.peek() != JsonType::kObject) {
    throw InputError(source + ": expected a JSON object with images, annotations, categories");
  }
  Members members;
  in.begin_object();
  for (std::string_view key; in.next_key(key);) {
    Member* member = key == "images"        ? &members.images
                     : key == "categories"  ? &members.categories
                     : key == "annotations" ? &members.annotations
                                            : nullptr;
    const JsonType type = in.peek();
    const size_t begin = in.offset();
    if (member == &members.annotations && type == JsonType::kArray) {
      // Most of a large file: only split into entries here, read on all cores later.
      size_t end = 0;
      member->elements = detail::split_array(text, begin, source, end);
      in.seek(end);
    } else {
      in.skip();
    }
    if (member) {
      member->present = true;
      member->type = type;
      member->span = {begin, in.offset()};
    }
  }
  in.finish();
  return members;
}

const Member& top_list(const Member& member, const char* name, const std::string& file) {
  if (!member.present) throw InputError(file + ": missing top-level \"" + name + "\" list");
  if (member.type != JsonType::kArray) throw InputError(file + ": \"" + name + "\" must be a list");
  return member;
}

// Image sides: up to 2^20 pixels each, and h * w within a COCO mask's 32-bit positions (maskApi
// would wrap around). Masks are kept as runs, so memory follows the runs, not the pixels.
constexpr int64_t kMaxImageSide = int64_t(1) << 20;

uint32_t get_size(const Field<int64_t>& field, const char* name, const Entry& at) {
  const int64_t value = field.get(at, name);
  if (value <= 0 || value > kMaxImageSide) {
    detail::fail(at, name, "must be between 1 and " + std::to_string(kMaxImageSide) + ", got " + std::to_string(value));
  }
  return uint32_t(value);
}

void check_pixels(const Image& image, const Entry& at) {
  if (uint64_t(image.width) * image.height > kMaxMaskPixels) {
    detail::fail(at, "", "width x height = " + std::to_string(image.width) + " x " + std::to_string(image.height) +
                             " pixels, more than 2^32 - 1 (COCO RLE positions are 32-bit)");
  }
}

// pycocotools indexes annotations by id: of two with one id its evaluation sees the last one twice.
void check_unique_annotation_ids(const std::vector<Annotation>& annotations, const std::string& source) {
  std::unordered_map<int64_t, size_t> first;
  first.reserve(annotations.size());
  for (size_t i = 0; i < annotations.size(); ++i) {
    const auto [it, added] = first.emplace(annotations[i].id, i);
    if (!added) {
      detail::fail({source, "annotations", i}, "id",
                   "duplicate annotation id " + std::to_string(annotations[i].id) + " (also annotations[" +
                       std::to_string(it->second) + "])");
    }
  }
}

// Calls read(in, index) for every entry of a (small) top-level list, in order.
template <typename Read>
void for_each_in_list(std::string_view text, const Member& list, const std::string& file, Read&& read) {
  JsonReader in(text, file, list.span.begin, list.span.end);
  in.begin_array();
  for (size_t i = 0; in.next_element(); ++i) read(in, i);
  in.finish();
}

Image read_image(JsonReader& in, const Entry& at) {
  if (in.peek() != JsonType::kObject) detail::fail(at, "", "expected an object");
  Field<int64_t> id, width, height;
  Field<std::string> file_name;
  in.begin_object();
  for (std::string_view key; in.next_key(key);) {
    if (key == "id") {
      detail::read_field(in, id, [](JsonReader& r) { return detail::read_int(r, "id"); });
    } else if (key == "file_name") {
      detail::read_field(in, file_name, [](JsonReader& r) { return detail::read_string(r, "file_name"); });
    } else if (key == "width") {
      detail::read_field(in, width, [](JsonReader& r) { return detail::read_int(r, "width"); });
    } else if (key == "height") {
      detail::read_field(in, height, [](JsonReader& r) { return detail::read_int(r, "height"); });
    } else {
      in.skip();
    }
  }
  Image image;
  image.id = id.get(at, "id");
  image.file_name = file_name.get(at, "file_name");
  image.width = get_size(width, "width", at);
  image.height = get_size(height, "height", at);
  check_pixels(image, at);
  return image;
}

Category read_category(JsonReader& in, const Entry& at) {
  if (in.peek() != JsonType::kObject) detail::fail(at, "", "expected an object");
  Field<int64_t> id;
  Field<std::string> name;
  in.begin_object();
  for (std::string_view key; in.next_key(key);) {
    if (key == "id") {
      detail::read_field(in, id, [](JsonReader& r) { return detail::read_int(r, "id"); });
    } else if (key == "name") {
      detail::read_field(in, name, [](JsonReader& r) { return detail::read_string(r, "name"); });
    } else {
      in.skip();
    }
  }
  return Category{id.get(at, "id"), name.get(at, "name")};
}

// One "annotations" entry, validated against the dataset's images and categories (read before).
// Fields are checked in a fixed order, whatever their order in the file.
Annotation read_annotation(JsonReader& in, const Entry& at, const Dataset& dataset) {
  if (in.peek() != JsonType::kObject) detail::fail(at, "", "expected an object");
  Field<int64_t> id, image_id, category_id;
  Field<std::array<double, 4>> bbox;
  Field<double> area;
  Field<bool> iscrowd;
  Field<detail::SegmentationValue> segmentation;
  in.begin_object();
  for (std::string_view key; in.next_key(key);) {
    if (key == "segmentation") {
      detail::read_field(in, segmentation, detail::read_segmentation);
    } else if (key == "bbox") {
      detail::read_field(in, bbox, [](JsonReader& r) { return detail::read_box(r, "bbox"); });
    } else if (key == "area") {
      detail::read_field(in, area, [](JsonReader& r) { return detail::read_finite(r, "area"); });
    } else if (key == "id") {
      detail::read_field(in, id, [](JsonReader& r) { return detail::read_int(r, "id"); });
    } else if (key == "image_id") {
      detail::read_field(in, image_id, [](JsonReader& r) { return detail::read_int(r, "image_id"); });
    } else if (key == "category_id") {
      detail::read_field(in, category_id, [](JsonReader& r) { return detail::read_int(r, "category_id"); });
    } else if (key == "iscrowd") {
      detail::read_field(in, iscrowd, detail::read_crowd);
    } else {
      in.skip();
    }
  }
  Annotation a;
  a.id = id.get(at, "id");
  a.image_id = image_id.get(at, "image_id");
  const int64_t image = dataset.image_index(a.image_id);
  if (image < 0) detail::fail(at, "image_id", "unknown image id " + std::to_string(a.image_id));
  a.category_id = category_id.get(at, "category_id");
  if (dataset.category_index(a.category_id) < 0) {
    detail::fail(at, "category_id", "unknown category id " + std::to_string(a.category_id));
  }
  a.bbox = bbox.get(at, "bbox");
  a.area = area.get(at, "area");
  if (a.area < 0) detail::fail(at, "area", "negative");
  if (iscrowd.present) a.iscrowd = iscrowd.get(at, "iscrowd");
  if (segmentation.present) {
    segmentation.get(at, "segmentation");
    const Image& im = dataset.images()[size_t(image)];
    try {
      a.segmentation = detail::to_segmentation(std::move(segmentation.value), im.height, im.width);
    } catch (const detail::FieldError& e) {
      detail::fail(at, e.field, e.what);
    }
  }
  return a;
}

}  // namespace

Dataset Dataset::load(const std::string& path) {
  const detail::MappedFile file(path);
  return parse(file.text(), path);
}

Dataset Dataset::parse(std::string_view json_text, const std::string& source) {
  const Members members = scan_members(json_text, source);
  Dataset dataset;
  dataset.source_ = source;

  for_each_in_list(json_text, top_list(members.images, "images", source), source, [&](JsonReader& in, size_t i) {
    const Entry at{source, "images", i};
    Image image = read_image(in, at);
    if (!dataset.image_index_.emplace(image.id, int64_t(dataset.images_.size())).second) {
      detail::fail(at, "id", "duplicate image id " + std::to_string(image.id));
    }
    dataset.images_.push_back(std::move(image));
  });

  for_each_in_list(json_text, top_list(members.categories, "categories", source), source,
                   [&](JsonReader& in, size_t i) {
                     const Entry at{source, "categories", i};
                     Category category = read_category(in, at);
                     if (!dataset.category_index_.emplace(category.id, int64_t(dataset.categories_.size())).second) {
                       detail::fail(at, "id", "duplicate category id " + std::to_string(category.id));
                     }
                     dataset.categories_.push_back(std::move(category));
                   });

  // No annotations at all is allowed (an image list to predict on); a non-list is not.
  if (members.annotations.present) {
    top_list(members.annotations, "annotations", source);
    dataset.annotations_.resize(members.annotations.elements.size());
    detail::for_each_entry(json_text, members.annotations.elements, source, [&](JsonReader& in, size_t i) {
      dataset.annotations_[i] = read_annotation(in, {source, "annotations", i}, dataset);
    });
    check_unique_annotation_ids(dataset.annotations_, source);
  }
  dataset.build_index();
  return dataset;
}

Dataset::Dataset(std::vector<Image> images, std::vector<Category> categories,
                 std::vector<Annotation> annotations, std::string source)
    : images_(std::move(images)),
      categories_(std::move(categories)),
      annotations_(std::move(annotations)),
      source_(std::move(source)) {
  for (size_t i = 0; i < images_.size(); ++i) {
    check_pixels(images_[i], {source_, "images", i});
    if (!image_index_.emplace(images_[i].id, int64_t(i)).second) {
      detail::fail({source_, "images", i}, "id", "duplicate image id " + std::to_string(images_[i].id));
    }
  }
  for (size_t i = 0; i < categories_.size(); ++i) {
    if (!category_index_.emplace(categories_[i].id, int64_t(i)).second) {
      detail::fail({source_, "categories", i}, "id", "duplicate category id " + std::to_string(categories_[i].id));
    }
  }
  for (size_t i = 0; i < annotations_.size(); ++i) {
    const Annotation& a = annotations_[i];
    const Entry at{source_, "annotations", i};
    if (image_index(a.image_id) < 0) detail::fail(at, "image_id", "unknown image id " + std::to_string(a.image_id));
    if (category_index(a.category_id) < 0) {
      detail::fail(at, "category_id", "unknown category id " + std::to_string(a.category_id));
    }
  }
  check_unique_annotation_ids(annotations_, source_);
  build_index();
}

void Dataset::build_index() {
  annotations_by_image_.assign(images_.size(), {});
  for (size_t i = 0; i < annotations_.size(); ++i) {
    annotations_by_image_[size_t(image_index_.at(annotations_[i].image_id))].push_back(i);
  }
}

int64_t Dataset::image_index(int64_t image_id) const {
  const auto it = image_index_.find(image_id);
  return it == image_index_.end() ? -1 : it->second;
}

int64_t Dataset::category_index(int64_t category_id) const {
  const auto it = category_index_.find(category_id);
  return it == category_index_.end() ? -1 : it->second;
}

const Image& Dataset::image(int64_t image_id) const {
  const int64_t index = image_index(image_id);
  if (index < 0) throw InputError(source_ + ": unknown image id " + std::to_string(image_id));
  return images_[size_t(index)];
}

const std::vector<size_t>& Dataset::annotations_of_image(int64_t image_id) const {
  const int64_t index = image_index(image_id);
  if (index < 0) throw InputError(source_ + ": unknown image id " + std::to_string(image_id));
  return annotations_by_image_[size_t(index)];
}

Rle Dataset::annotation_rle(size_t annotation_index) const {
  const Annotation& a = annotations_.at(annotation_index);
  const Image& im = image(a.image_id);
  const Entry at{source_, "annotations", annotation_index};
  switch (a.segmentation.kind) {
    case Segmentation::Kind::kRle:
      return a.segmentation.rle;
    case Segmentation::Kind::kPolygons:
      try {
        return from_polygons(a.segmentation.polygons, im.height, im.width);
      } catch (const InputError& e) {
        detail::fail(at, "segmentation", e.what());
      }
    case Segmentation::Kind::kNone:
      break;
  }
  detail::fail(at, "segmentation", "missing (needed for mask evaluation)");
}

std::map<std::string, int64_t> image_ids_by_file_name(const Dataset& dataset) {
  std::map<std::string, int64_t> ids;
  for (const Image& image : dataset.images()) ids[image.file_name] = image.id;
  return ids;
}

}  // namespace instseg::coco
