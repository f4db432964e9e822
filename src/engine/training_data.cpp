#include "instseg/engine/training_data.h"

#include <torch/torch.h>

#include <filesystem>
#include <tuple>

#include "instseg/coco/rle.h"
#include "instseg/data/coco_dataset.h"
#include "instseg/data/folder_dataset.h"
#include "instseg/data/synthetic.h"
#include "instseg/errors.h"

namespace instseg {

namespace {

// Offsets the validation seed so the two generated splits never share an image.
constexpr uint64_t kValidationSeedOffset = 1000003;

data::SyntheticOptions synthetic_options(const DataConfig& config, int64_t count, uint64_t seed) {
  data::SyntheticOptions options;
  options.num_images = count;
  options.height = options.width = config.synthetic_image_size;
  options.min_objects = config.synthetic_min_objects;
  options.max_objects = config.synthetic_max_objects;
  options.min_size = config.synthetic_min_shape_size;
  options.max_size = config.synthetic_max_shape_size;
  options.min_visible_fraction = config.synthetic_min_visible_fraction;
  options.seed = seed;
  return options;
}

}  // namespace

TrainingData::TrainingData(const DataConfig& config) {
  if (config.kind == "synthetic") {
    train_ = std::make_shared<data::SyntheticDataset>(
        synthetic_options(config, config.synthetic_train_images, static_cast<uint64_t>(config.seed)));
    if (config.synthetic_val_images > 0) {
      auto options = synthetic_options(config, config.synthetic_val_images,
                                       static_cast<uint64_t>(config.seed) + kValidationSeedOffset);
      std::tie(options.min_objects, options.max_objects) = config.synthetic_val_objects();
      val_ = std::make_shared<data::SyntheticDataset>(options);
    }
  } else {
    const data::ImageReadOptions read{config.max_image_pixels, "data.max_image_pixels"};
    if (config.kind == "folder") {
      train_ = std::make_shared<data::FolderDataset>(config.train_images, "object", read);
      if (!config.val_images.empty()) val_ = std::make_shared<data::FolderDataset>(config.val_images, "object", read);
    } else {
      train_ = std::make_shared<data::CocoDataset>(config.train_annotations, config.train_images, read);
      if (!config.val_annotations.empty()) {
        val_ = std::make_shared<data::CocoDataset>(config.val_annotations, config.val_images, read);
      }
    }
  }
  if (val_ && !(val_->categories() == train_->categories())) {
    throw InputError("the validation split's categories differ from the training split's");
  }
  // COCO's own file keeps what training targets leave out (crowd regions, annotated areas).
  if (val_) {
    val_ground_truth_ = config.kind == "coco" ? coco::Dataset::load(config.val_annotations) : to_coco_ground_truth(*val_);
  }
}

coco::Dataset to_coco_ground_truth(const data::Dataset& dataset) {
  std::vector<coco::Image> images;
  std::vector<coco::Annotation> annotations;
  std::vector<coco::Category> categories;
  const auto& map = dataset.categories();
  for (int64_t label = 1; label <= map.num_categories(); ++label) {
    categories.push_back({map.category_id_of(label), map.name_of(label)});
  }
  for (int64_t i = 0; i < dataset.size(); ++i) {
    const data::Sample sample = dataset.get(i);
    coco::Image image;
    image.id = sample.image_id;
    image.file_name = sample.file.empty() ? std::to_string(sample.image_id) + ".png"
                                          : std::filesystem::path(sample.file).filename().string();
    image.height = static_cast<uint32_t>(sample.image.size(1));
    image.width = static_cast<uint32_t>(sample.image.size(2));
    images.push_back(image);
    const auto masks = sample.targets.masks.to(torch::kUInt8).contiguous();
    const auto labels = sample.targets.labels.to(torch::kLong);
    for (int64_t g = 0; g < masks.size(0); ++g) {
      coco::Annotation a;
      a.id = static_cast<int64_t>(annotations.size()) + 1;
      a.image_id = image.id;
      a.category_id = map.category_id_of(labels[g].item<int64_t>());
      a.segmentation.kind = coco::Segmentation::Kind::kRle;
      a.segmentation.rle = coco::encode(masks[g].data_ptr<uint8_t>(), image.height, image.width);
      a.area = static_cast<double>(coco::area(a.segmentation.rle));
      a.bbox = coco::to_bbox(a.segmentation.rle);
      annotations.push_back(std::move(a));
    }
  }
  return coco::Dataset(std::move(images), std::move(categories), std::move(annotations), "validation split");
}

}  // namespace instseg
