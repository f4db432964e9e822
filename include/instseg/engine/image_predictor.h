#pragma once
// A loaded model that answers for pictures held in memory: the per-image step of `predict`
// (engine/inference.h runs the same step over files) for the server, video frames and the embedding
// API (include/instseg/instseg.h). One image gives exactly the results `predict` writes for it.
#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "instseg/coco/results.h"
#include "instseg/engine/model_factory.h"
#include "instseg/modeling/roi_heads/paste_masks.h"
#include "instseg/structures/detections.h"

namespace instseg {

// What the model made of one image.
struct ImagePrediction {
  Detections detections;                    // model labels 1..K; masks per box [K, 1, M, M]
  std::shared_ptr<const MaskPaster> masks;  // pastes detection k's mask into the image's pixels
  // COCO results, as predictions.json holds them: the data's category ids (categories.json of a
  // run; a bare torchvision model's labels are COCO's ids), bbox [x, y, w, h], score, and the mask
  // binarised at 0.5 as compressed RLE. image_id as given.
  std::vector<coco::Detection> results;
  double model_seconds = 0.0;  // forward + paste + encoding of this call (shared by a batch's images)
};

class ImagePredictor {
 public:
  explicit ImagePredictor(LoadedModel loaded);

  const LoadedModel& loaded() const { return loaded_; }
  MaskRcnnImpl& model() { return *loaded_.model; }
  // Display names, index = model label (0 = background): the run's categories, else COCO's.
  const std::vector<std::string>& class_names() const { return class_names_; }
  // The data's category id of model label `label` (a bare torchvision model: the label itself).
  int64_t category_id_of(int64_t label) const;

  // One image, [3, H, W] float RGB in [0, 1] (data::read_image_rgb, decode_image_rgb,
  // image_rgb_from_bgr). The results are byte for byte those `predict` writes for the same
  // picture and weights. Not for concurrent calls on one predictor (the model is shared).
  ImagePrediction predict(const torch::Tensor& image, int64_t image_id = 1);

  // Several images in one forward pass (torchvision's batching: each resized on its own, padded
  // to the batch's largest). Images of one size give predict()'s results up to float rounding of
  // the batched kernels; images of different sizes may also differ near the padding (anchors and
  // proposals over the padded area), so callers batch pictures of one size together.
  std::vector<ImagePrediction> predict(const std::vector<torch::Tensor>& images,
                                       const std::vector<int64_t>& image_ids);

 private:
  LoadedModel loaded_;
  std::vector<std::string> class_names_;
};

}  // namespace instseg
