#include "instseg/engine/image_predictor.h"

#include <torch/torch.h>

#include <chrono>
#include <stdexcept>

#include "instseg/engine/coco_results.h"
#include "instseg/io/class_names.h"

namespace instseg {

ImagePredictor::ImagePredictor(LoadedModel loaded) : loaded_(std::move(loaded)) {
  if (!loaded_.model) throw std::invalid_argument("ImagePredictor: no model");
  loaded_.model->eval();
  class_names_ = loaded_.categories ? loaded_.categories->class_names() : coco_class_names();
}

int64_t ImagePredictor::category_id_of(int64_t label) const {
  return loaded_.categories ? loaded_.categories->category_id_of(label) : label;
}

ImagePrediction ImagePredictor::predict(const torch::Tensor& image, int64_t image_id) {
  return std::move(predict(std::vector<torch::Tensor>{image}, {image_id}).front());
}

std::vector<ImagePrediction> ImagePredictor::predict(const std::vector<torch::Tensor>& images,
                                                     const std::vector<int64_t>& image_ids) {
  if (images.size() != image_ids.size()) {
    throw std::invalid_argument("ImagePredictor::predict: " + std::to_string(images.size()) + " images but " +
                                std::to_string(image_ids.size()) + " image ids");
  }
  std::vector<ImagePrediction> out(images.size());
  if (images.empty()) return out;
  // The same step as inference_on_dataset (engine/inference.cpp): per-box masks, pasted one at a time.
  torch::InferenceMode inference;
  const auto start = std::chrono::steady_clock::now();
  std::vector<Detections> detections = loaded_.model->predict_box_masks(images);
  for (size_t i = 0; i < images.size(); ++i) {
    ImagePrediction& p = out[i];
    p.detections = std::move(detections[i]);
    p.masks = std::make_shared<const MaskPaster>(
        loaded_.model->mask_paster(p.detections, images[i].size(1), images[i].size(2)));
    p.results = to_coco_detections(
        image_ids[i], loaded_.categories ? with_category_ids(p.detections, *loaded_.categories) : p.detections,
        *p.masks);
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  for (ImagePrediction& p : out) p.model_seconds = seconds;
  return out;
}

}  // namespace instseg
