#pragma once
// A COCO instances file and its image folder as training samples (torchvision's reference
// CocoDetection + ConvertCocoPolysToMask, with the bad-data handling below). Read by the COCO
// reader of include/instseg/coco/dataset.h; see docs/data.md for what happens to which bad data.
#include <array>
#include <string>
#include <vector>

#include "instseg/coco/dataset.h"
#include "instseg/data/dataset.h"
#include "instseg/data/image_io.h"

namespace instseg::data {

// What construction left out or changed. Nothing here is an error; see describe().
struct CocoSkipCounts {
  int64_t crowd = 0;            // iscrowd annotations: never training targets
  int64_t short_polygons = 0;   // polygons of fewer than 3 points, removed (pycocotools fails on them)
  int64_t without_mask = 0;     // annotations with no polygon or RLE left: dropped
  int64_t zero_area = 0;        // boxes without width or height inside the image: dropped
  int64_t clipped_boxes = 0;    // boxes reaching outside the image: clipped to it, kept
  int64_t negatives = 0;        // images left without instances: kept, with empty targets
  std::string describe() const; // "3 crowd annotations not used, 1 polygon with < 3 points removed, ..."
};

class CocoDataset : public Dataset {
 public:
  // image_dir: the folder `file_name`s are relative to. Throws InputError for a malformed file
  // (naming the entry and field) and, checked up front, for image files that do not exist.
  // `read_options`: the pixel limit images are read under.
  // check_images false: an image file is only looked for when get() reads it (a tool that uses
  // one image of a large file).
  CocoDataset(const std::string& annotations_path, const std::string& image_dir,
              ImageReadOptions read_options = {}, bool check_images = true);

  int64_t size() const override { return static_cast<int64_t>(entries_.size()); }  // every image, ascending id
  // Reads the image (InputError for an unreadable one, or one whose size differs from the file's
  // width and height) and rasterises its masks as COCO.annToMask. Instances whose mask has no
  // pixel are dropped here.
  Sample get(int64_t index) const override;
  const CategoryMap& categories() const override { return categories_; }  // every category of the file
  // The index get() takes for the image with this file_name (as written in the file), or -1.
  int64_t index_of_file(const std::string& file_name) const;

  const coco::Dataset& annotations() const { return coco_; }
  const CocoSkipCounts& skipped() const { return skipped_; }

 private:
  struct Instance {
    size_t annotation;               // index into coco_.annotations()
    int64_t label;
    std::array<float, 4> box_xyxy;   // clipped to the image
  };
  struct Entry {
    size_t image;                    // index into coco_.images()
    std::vector<Instance> instances;
  };
  coco::Dataset coco_;
  std::string image_dir_;
  ImageReadOptions read_options_;
  CategoryMap categories_;
  std::vector<Entry> entries_;
  CocoSkipCounts skipped_;
};

}  // namespace instseg::data
