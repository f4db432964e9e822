#include "instseg/data/folder_dataset.h"

#include <torch/torch.h>

#include <algorithm>
#include <cctype>
#include <filesystem>

#include "instseg/data/image_io.h"
#include "instseg/errors.h"

namespace instseg::data {
namespace fs = std::filesystem;
namespace {

bool is_image_file(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext == ".jpg" || ext == ".jpeg" || ext == ".png" || ext == ".bmp";
}

std::string size_text(const torch::Tensor& t) {
  return std::to_string(t.size(-1)) + "x" + std::to_string(t.size(-2));
}

}  // namespace

FolderDataset::FolderDataset(const std::string& root, const std::string& single_class_name,
                             ImageReadOptions read_options)
    : read_options_(std::move(read_options)) {
  if (!fs::is_directory(root)) throw InputError(root + ": dataset folder not found");
  std::vector<fs::path> class_dirs;  // each holds images/ and masks/
  std::vector<std::string> names;
  if (fs::is_directory(fs::path(root) / "images")) {
    class_dirs.push_back(root);
    names.push_back(single_class_name);
  } else {
    for (const auto& entry : fs::directory_iterator(root)) {
      if (fs::is_directory(entry.path() / "images")) class_dirs.push_back(entry.path());
    }
    std::sort(class_dirs.begin(), class_dirs.end());  // directory order is arbitrary
    for (const auto& d : class_dirs) names.push_back(d.filename().string());
  }
  if (class_dirs.empty()) {
    throw InputError(root + ": no images/ folder, neither at the top nor in a class folder (see docs/data.md)");
  }
  std::vector<int64_t> ids(class_dirs.size());
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int64_t>(i) + 1;
  categories_ = CategoryMap(ids, names);

  for (size_t c = 0; c < class_dirs.size(); ++c) {
    std::vector<fs::path> images;
    for (const auto& entry : fs::directory_iterator(class_dirs[c] / "images")) {
      if (entry.is_regular_file() && is_image_file(entry.path())) images.push_back(entry.path());
    }
    std::sort(images.begin(), images.end());
    for (const auto& image : images) {
      const fs::path mask = class_dirs[c] / "masks" / (image.stem().string() + ".png");
      if (!fs::is_regular_file(mask)) {
        throw InputError(image.string() + ": no instance mask (expected " + mask.string() + ")");
      }
      items_.push_back({image.string(), mask.string(), static_cast<int64_t>(c) + 1});
    }
  }
  if (items_.empty()) throw InputError(root + ": no images (.jpg, .jpeg, .png, .bmp) in its images/ folders");
}

Sample FolderDataset::get(int64_t index) const {
  TORCH_CHECK(index >= 0 && index < size(), "FolderDataset: index ", index, " out of range");
  const Item& item = items_[static_cast<size_t>(index)];
  Sample sample;
  sample.image = read_image_rgb(item.image, read_options_);
  sample.image_id = index + 1;
  sample.file = item.image;
  const torch::Tensor ids = read_label_image(item.mask, read_options_);  // [H, W]
  if (ids.size(0) != sample.image.size(1) || ids.size(1) != sample.image.size(2)) {
    throw InputError(item.mask + ": mask is " + size_text(ids) + " but its image " + item.image + " is " +
                     size_text(sample.image));
  }
  const torch::Tensor instance_ids = std::get<0>(torch::_unique(ids.flatten(), /*sorted=*/true));
  const torch::Tensor present = instance_ids.index({instance_ids != 0});  // [G]
  if (present.numel() == 0) {
    sample.targets = empty_targets(ids.size(0), ids.size(1));
    return sample;
  }
  sample.targets.masks = ids.unsqueeze(0).eq(present.view({-1, 1, 1})).to(torch::kUInt8);  // [G, H, W]
  sample.targets.boxes = mask_boxes(sample.targets.masks);
  sample.targets.labels = torch::full({present.numel()}, item.label, torch::kInt64);
  return sample;
}

}  // namespace instseg::data
