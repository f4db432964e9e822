#pragma once
// COCO instances JSON (images, categories, annotations), read and validated once, for evaluation
// and training. Every malformed entry is an InputError naming the file, the entry and the field:
//   "instances.json: annotations[12].bbox: expected 4 numbers"
#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "instseg/coco/rle.h"

namespace instseg::coco {

struct Image {
  int64_t id = 0;
  std::string file_name;
  uint32_t width = 0;
  uint32_t height = 0;
};

struct Category {
  int64_t id = 0;
  std::string name;
};

// An annotation's mask as stored in the file: polygons, or an RLE (compressed or uncompressed,
// already decoded into runs). `kind` says which; kNone when the annotation has no segmentation.
struct Segmentation {
  enum class Kind { kNone, kPolygons, kRle };
  Kind kind = Kind::kNone;
  std::vector<std::vector<double>> polygons;  // [x0, y0, x1, y1, ...] per part, image pixels
  Rle rle;
};

struct Annotation {
  int64_t id = 0;
  int64_t image_id = 0;
  int64_t category_id = 0;
  std::array<double, 4> bbox{};  // [x, y, width, height]
  double area = 0;               // from the file: COCOeval's area ranges use it, not the mask
  bool iscrowd = false;          // missing means 0
  Segmentation segmentation;
};

class Dataset {
 public:
  // Reads and validates a COCO instances file. Throws InputError.
  static Dataset load(const std::string& path);
  // Same from JSON text; `source` names it in error messages.
  static Dataset parse(std::string_view json_text, const std::string& source);
  // Builds one in memory (e.g. from a training set); validates ids and references like load().
  Dataset(std::vector<Image> images, std::vector<Category> categories,
          std::vector<Annotation> annotations, std::string source = "<memory>");
  Dataset() = default;

  const std::vector<Image>& images() const { return images_; }
  const std::vector<Category>& categories() const { return categories_; }
  const std::vector<Annotation>& annotations() const { return annotations_; }  // file order
  const std::string& source() const { return source_; }

  // Index into images() / categories(), or -1 when the id is unknown.
  int64_t image_index(int64_t image_id) const;
  int64_t category_index(int64_t category_id) const;
  const Image& image(int64_t image_id) const;  // throws InputError for an unknown id
  // Indices into annotations() of one image, in file order.
  const std::vector<size_t>& annotations_of_image(int64_t image_id) const;

  // The annotation's mask at its image's size, as COCO.annToRLE (polygons merged). Throws
  // InputError naming the annotation when it has no segmentation or pycocotools rejects it.
  Rle annotation_rle(size_t annotation_index) const;

 private:
  void build_index();
  std::vector<Image> images_;
  std::vector<Category> categories_;
  std::vector<Annotation> annotations_;
  std::string source_;
  std::unordered_map<int64_t, int64_t> image_index_, category_index_;
  std::vector<std::vector<size_t>> annotations_by_image_;  // per images() index
};

// file_name -> image id: gives results for a folder of images the ids of a COCO file's images
// (predict --coco-gt). A file name that appears twice maps to its last image.
std::map<std::string, int64_t> image_ids_by_file_name(const Dataset& dataset);

}  // namespace instseg::coco
