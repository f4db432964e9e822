#include "instseg/coco/dataset.h"

#include <nlohmann/json.hpp>

#include "coco/json_fields.h"
#include "instseg/errors.h"

namespace instseg::coco {

using detail::Entry;
using nlohmann::json;

namespace {

const json& top_array(const json& root, const char* name, const std::string& file, bool required) {
  static const json empty = json::array();
  const auto it = root.find(name);
  if (it == root.end()) {
    if (required) throw InputError(file + ": missing top-level \"" + name + "\" list");
    return empty;
  }
  if (!it->is_array()) throw InputError(file + ": \"" + name + "\" must be a list");
  return *it;
}

uint32_t get_size(const json& object, const char* field, const Entry& at) {
  const int64_t value = detail::get_int(object, field, at);
  if (value <= 0 || value > (int64_t(1) << 20)) detail::fail(at, field, "must be a positive size");
  return uint32_t(value);
}

}  // namespace

Dataset Dataset::load(const std::string& path) { return parse(detail::read_text(path), path); }

Dataset Dataset::parse(const std::string& json_text, const std::string& source) {
  // Annotations (most of a large file) are split off and parsed one by one on all cores.
  std::vector<std::pair<std::string, detail::Span>> members;
  std::vector<detail::Span> annotation_spans;
  json root = json::object();
  bool has_annotations = false;
  if (detail::split_object(json_text, members)) {
    for (const auto& [key, span] : members) {
      if (key == "annotations" && detail::split_array(json_text, span, annotation_spans)) {
        has_annotations = true;
      } else if (key == "images" || key == "categories" || key == "annotations") {
        try {
          root[key] = json::parse(json_text.begin() + long(span.begin), json_text.begin() + long(span.end));
        } catch (const json::parse_error& e) {
          throw InputError(source + ": not valid JSON in \"" + key + "\": " + e.what());
        }
      }
    }
  } else {
    root = detail::parse_json(json_text, source);
    if (!root.is_object()) throw InputError(source + ": expected a JSON object with images, annotations, categories");
  }
  Dataset dataset;
  dataset.source_ = source;

  const json& images = top_array(root, "images", source, true);
  dataset.images_.reserve(images.size());
  for (size_t i = 0; i < images.size(); ++i) {
    const Entry at{source, "images", i};
    const json& entry = images[i];
    if (!entry.is_object()) detail::fail(at, "", "expected an object");
    Image image;
    image.id = detail::get_int(entry, "id", at);
    const json& name = detail::require(entry, "file_name", at);
    if (!name.is_string()) detail::fail(at, "file_name", "expected a string");
    image.file_name = name.get<std::string>();
    image.width = get_size(entry, "width", at);
    image.height = get_size(entry, "height", at);
    if (!dataset.image_index_.emplace(image.id, int64_t(dataset.images_.size())).second) {
      detail::fail(at, "id", "duplicate image id " + std::to_string(image.id));
    }
    dataset.images_.push_back(std::move(image));
  }

  const json& categories = top_array(root, "categories", source, true);
  for (size_t i = 0; i < categories.size(); ++i) {
    const Entry at{source, "categories", i};
    const json& entry = categories[i];
    if (!entry.is_object()) detail::fail(at, "", "expected an object");
    Category category;
    category.id = detail::get_int(entry, "id", at);
    const json& name = detail::require(entry, "name", at);
    if (!name.is_string()) detail::fail(at, "name", "expected a string");
    category.name = name.get<std::string>();
    if (!dataset.category_index_.emplace(category.id, int64_t(dataset.categories_.size())).second) {
      detail::fail(at, "id", "duplicate category id " + std::to_string(category.id));
    }
    dataset.categories_.push_back(std::move(category));
  }

  if (!has_annotations) {
    const json& annotations = top_array(root, "annotations", source, false);
    dataset.annotations_.resize(annotations.size());
    for (size_t i = 0; i < annotations.size(); ++i) dataset.annotations_[i] = dataset.read_annotation(annotations[i], i);
  } else {
    dataset.annotations_.resize(annotation_spans.size());
    detail::for_each_element(
        json_text, annotation_spans,
        [&](const json& entry, size_t i) { dataset.annotations_[i] = dataset.read_annotation(entry, i); }, source,
        "annotations");
  }
  dataset.build_index();
  return dataset;
}

Annotation Dataset::read_annotation(const nlohmann::json& entry, size_t i) const {
  const Entry at{source_, "annotations", i};
  if (!entry.is_object()) detail::fail(at, "", "expected an object");
  Annotation a;
  a.id = detail::get_int(entry, "id", at);
  a.image_id = detail::get_int(entry, "image_id", at);
  const auto image = image_index_.find(a.image_id);
  if (image == image_index_.end()) detail::fail(at, "image_id", "unknown image id " + std::to_string(a.image_id));
  a.category_id = detail::get_int(entry, "category_id", at);
  if (!category_index_.count(a.category_id)) {
    detail::fail(at, "category_id", "unknown category id " + std::to_string(a.category_id));
  }
  a.bbox = detail::get_box(entry, "bbox", at);
  a.area = detail::get_number(entry, "area", at);
  if (a.area < 0) detail::fail(at, "area", "negative");
  const auto crowd = entry.find("iscrowd");
  if (crowd != entry.end()) {
    if (crowd->is_boolean()) {
      a.iscrowd = crowd->get<bool>();
    } else if (crowd->is_number_integer() && (crowd->get<int64_t>() == 0 || crowd->get<int64_t>() == 1)) {
      a.iscrowd = crowd->get<int64_t>() == 1;
    } else {
      detail::fail(at, "iscrowd", "expected 0 or 1, got " + crowd->dump());
    }
  }
  const auto segmentation = entry.find("segmentation");
  if (segmentation != entry.end()) {
    const Image& im = images_[size_t(image->second)];
    a.segmentation = detail::get_segmentation(*segmentation, im.height, im.width, at);
  }
  return a;
}

Dataset::Dataset(std::vector<Image> images, std::vector<Category> categories,
                 std::vector<Annotation> annotations, std::string source)
    : images_(std::move(images)),
      categories_(std::move(categories)),
      annotations_(std::move(annotations)),
      source_(std::move(source)) {
  for (size_t i = 0; i < images_.size(); ++i) {
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

}  // namespace instseg::coco
