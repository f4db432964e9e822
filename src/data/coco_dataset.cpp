#include "instseg/data/coco_dataset.h"

#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "instseg/coco/rle.h"
#include "instseg/data/image_io.h"
#include "instseg/errors.h"

namespace instseg::data {
namespace fs = std::filesystem;
namespace {

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(path + ": cannot read annotations file");
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// Removes polygons of fewer than 3 points (< 6 numbers) from every annotation, and the
// segmentation itself when nothing is left. The COCO reader rejects a file with such a polygon,
// as pycocotools does; for training, one bad outline should cost only that instance. Returns the
// number of polygons removed. Anything not shaped like a polygon list is left to the reader.
int64_t remove_short_polygons(nlohmann::json& doc) {
  int64_t removed = 0;
  if (!doc.is_object() || !doc.contains("annotations") || !doc["annotations"].is_array()) return 0;
  for (auto& annotation : doc["annotations"]) {
    if (!annotation.is_object() || !annotation.contains("segmentation")) continue;
    auto& polygons = annotation["segmentation"];
    if (!polygons.is_array()) continue;
    const auto before = polygons.size();
    polygons.erase(std::remove_if(polygons.begin(), polygons.end(),
                                  [](const nlohmann::json& p) { return p.is_array() && p.size() < 6; }),
                   polygons.end());
    removed += static_cast<int64_t>(before - polygons.size());
    if (polygons.empty()) annotation.erase("segmentation");
  }
  return removed;
}

std::string plural(int64_t n, const std::string& what) {
  return std::to_string(n) + " " + what + (n == 1 ? "" : "s");
}

}  // namespace

std::string CocoSkipCounts::describe() const {
  std::string out;
  const auto add = [&](int64_t n, const std::string& text) {
    if (n > 0) out += (out.empty() ? "" : ", ") + text;
  };
  add(crowd, plural(crowd, "crowd annotation") + " not used");
  add(short_polygons, plural(short_polygons, "polygon") + " with < 3 points removed");
  add(without_mask, plural(without_mask, "annotation") + " without a mask dropped");
  add(zero_area, plural(zero_area, "zero-area box") + " dropped");
  add(clipped_boxes, plural(clipped_boxes, "box") + " clipped to the image");
  add(negatives, plural(negatives, "image") + " without instances kept as negatives");
  return out;
}

CocoDataset::CocoDataset(const std::string& annotations_path, const std::string& image_dir,
                         ImageReadOptions read_options, bool check_images)
    : image_dir_(image_dir), read_options_(std::move(read_options)) {
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(read_text(annotations_path));
  } catch (const nlohmann::json::parse_error& e) {
    throw InputError(annotations_path + ": not valid JSON (" + e.what() + ")");
  }
  skipped_.short_polygons = remove_short_polygons(doc);
  coco_ = coco::Dataset::parse(doc.dump(), annotations_path);

  std::vector<int64_t> ids;
  std::vector<std::string> names;
  for (const auto& c : coco_.categories()) {
    ids.push_back(c.id);
    names.push_back(c.name);
  }
  try {
    categories_ = CategoryMap(ids, names);
  } catch (const InputError& e) {
    throw InputError(annotations_path + ": " + e.what());
  }

  // Every image file must exist before training starts, not fail hours in.
  std::vector<std::string> missing;
  for (const auto& image : coco_.images()) {
    if (!check_images) break;
    const fs::path file = fs::path(image_dir_) / image.file_name;
    if (!fs::is_regular_file(file)) missing.push_back(file.string());
  }
  if (!missing.empty()) {
    throw InputError(missing.front() + ": image file not found (listed in " + annotations_path + ")" +
                     (missing.size() > 1 ? "; " + std::to_string(missing.size() - 1) + " more missing" : ""));
  }

  std::vector<size_t> order(coco_.images().size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return coco_.images()[a].id < coco_.images()[b].id; });
  for (size_t i : order) {
    const coco::Image& image = coco_.images()[i];
    Entry entry{i, {}};
    for (size_t a : coco_.annotations_of_image(image.id)) {
      const coco::Annotation& ann = coco_.annotations()[a];
      if (ann.iscrowd) {
        ++skipped_.crowd;
        continue;
      }
      if (ann.segmentation.kind == coco::Segmentation::Kind::kNone) {
        ++skipped_.without_mask;
        continue;
      }
      // xywh -> xyxy clipped to the image, as torchvision's ConvertCocoPolysToMask.
      const auto [x, y, w, h] = ann.bbox;
      const float x1 = std::clamp<float>(x, 0, image.width), x2 = std::clamp<float>(x + w, 0, image.width);
      const float y1 = std::clamp<float>(y, 0, image.height), y2 = std::clamp<float>(y + h, 0, image.height);
      if (!(x2 > x1 && y2 > y1)) {
        ++skipped_.zero_area;
        continue;
      }
      if (x1 != x || y1 != y || x2 != x + w || y2 != y + h) ++skipped_.clipped_boxes;
      entry.instances.push_back({a, categories_.label_of(ann.category_id), {x1, y1, x2, y2}});
    }
    if (entry.instances.empty()) ++skipped_.negatives;
    entries_.push_back(std::move(entry));
  }
}

int64_t CocoDataset::index_of_file(const std::string& file_name) const {
  for (size_t i = 0; i < entries_.size(); ++i) {
    if (coco_.images()[entries_[i].image].file_name == file_name) return int64_t(i);
  }
  return -1;
}

Sample CocoDataset::get(int64_t index) const {
  TORCH_CHECK(index >= 0 && index < size(), "CocoDataset: index ", index, " out of range");
  const Entry& entry = entries_[static_cast<size_t>(index)];
  const coco::Image& info = coco_.images()[entry.image];
  Sample sample;
  sample.file = (fs::path(image_dir_) / info.file_name).string();
  sample.image_id = info.id;
  sample.image = read_image_rgb(sample.file, read_options_);
  const int64_t h = sample.image.size(1), w = sample.image.size(2);
  if (h != static_cast<int64_t>(info.height) || w != static_cast<int64_t>(info.width)) {
    throw InputError(sample.file + ": image is " + std::to_string(w) + "x" + std::to_string(h) + " but " +
                     coco_.source() + " gives " + std::to_string(info.width) + "x" + std::to_string(info.height) +
                     " for image id " + std::to_string(info.id));
  }
  std::vector<torch::Tensor> masks, boxes;
  std::vector<int64_t> labels;
  for (const Instance& instance : entry.instances) {
    std::vector<uint8_t> pixels = coco::decode(coco_.annotation_rle(instance.annotation));  // row-major
    auto mask = torch::from_blob(pixels.data(), {h, w}, torch::kUInt8).clone();
    if (!mask.any().item<bool>()) continue;  // e.g. a collinear polygon: nothing to learn from
    masks.push_back(mask);
    boxes.push_back(torch::tensor(std::vector<float>(instance.box_xyxy.begin(), instance.box_xyxy.end())));
    labels.push_back(instance.label);
  }
  if (masks.empty()) {
    sample.targets = empty_targets(h, w);
  } else {
    sample.targets = Targets{torch::stack(boxes), torch::tensor(labels, torch::kInt64), torch::stack(masks)};
  }
  return sample;
}

}  // namespace instseg::data
