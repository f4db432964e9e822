#pragma once
// Images with instance-id mask PNGs, for users' own data without a COCO file. Layout (docs/data.md):
//   one class:        root/images/<stem>.{jpg,jpeg,png,bmp}  +  root/masks/<stem>.png
//   class per folder: root/<class name>/images/...           +  root/<class name>/masks/...
// A mask is a single-channel 8- or 16-bit PNG of the image's size: 0 = background, each other
// value one instance.
#include <string>
#include <vector>

#include "instseg/data/dataset.h"
#include "instseg/data/image_io.h"

namespace instseg::data {

class FolderDataset : public Dataset {
 public:
  // Lists the images and checks up front that each has its mask; throws InputError naming the
  // image and the mask it expected. `single_class_name` names the class of the one-class layout;
  // `read_options`: the pixel limit images and masks are read under.
  explicit FolderDataset(const std::string& root, const std::string& single_class_name = "object",
                         ImageReadOptions read_options = {});

  int64_t size() const override { return static_cast<int64_t>(items_.size()); }
  // Throws InputError naming both files when the mask's size differs from the image's.
  Sample get(int64_t index) const override;
  const CategoryMap& categories() const override { return categories_; }

 private:
  struct Item {
    std::string image, mask;
    int64_t label;
  };
  std::vector<Item> items_;
  ImageReadOptions read_options_;
  CategoryMap categories_;
};

}  // namespace instseg::data
