// instseg::Model (include/instseg/instseg.h): load_model + ImagePredictor behind a pointer, the
// predictions turned into the API's plain types. No inference of its own: the per-image step is
// engine/image_predictor.h's, the one `predict` and the server run.
#include <torch/torch.h>

#include <algorithm>
#include <mutex>
#include <thread>

#include "instseg/coco/rle.h"
#include "instseg/common/blas_threads.h"
#include "instseg/data/image_io.h"
#include "instseg/engine/image_predictor.h"
#include "instseg/engine/model_factory.h"
#include "instseg/instseg.h"
#include "instseg/io/class_names.h"
#include "instseg/modeling/layers/norm.h"
#include "instseg/ops/fused_conv.h"

namespace instseg {

void ModelOptions::validate() const {
  if (threads < 0) throw ConfigError("ModelOptions.threads must be >= 0 (0 = every core), got " + std::to_string(threads));
  if (!(score_thresh <= 1.0) || (score_thresh < 0.0 && score_thresh != -1.0)) {
    throw ConfigError("ModelOptions.score_thresh must be in [0, 1] (-1 = the model's), got " +
                      std::to_string(score_thresh));
  }
  if (blas_threads < 0) throw ConfigError("ModelOptions.blas_threads must be >= 0 (0 = leave it), got " + std::to_string(blas_threads));
  if (detections_per_image < 0) {
    throw ConfigError("ModelOptions.detections_per_image must be >= 0 (0 = the model's), got " +
                      std::to_string(detections_per_image));
  }
  if (min_size < 0 || max_size < 0 || (min_size > 0 && max_size > 0 && max_size < min_size)) {
    throw ConfigError("ModelOptions: need 0 < min_size <= max_size (0 = the model's), got " + std::to_string(min_size) +
                      " and " + std::to_string(max_size));
  }
  if (max_image_pixels < 0 || max_image_pixels > data::kMaxImagePixelsCeiling) {
    throw ConfigError("ModelOptions.max_image_pixels must be in [0, " + std::to_string(data::kMaxImagePixelsCeiling) +
                      "] (0 = " + std::to_string(data::kDefaultMaxImagePixels) + "), got " +
                      std::to_string(max_image_pixels));
  }
  if (!mask_paste.empty()) mask_paste_named(mask_paste, "ModelOptions.mask_paste");
  ops::inference_precision_named(precision, "ModelOptions.precision");
}

struct Model::Impl {
  explicit Impl(LoadedModel loaded) : predictor(std::move(loaded)) {}
  ImagePredictor predictor;
  data::ImageReadOptions read_options;
  std::mutex mutex;  // one picture at a time through the shared model
  std::string precision;  // the fused path's arithmetic (ModelInfo::precision), as named

  // A picture in memory is held to the limit a file is held to from its header.
  void check_pixels(int64_t width, int64_t height, const std::string& source) const {
    if (width * height <= read_options.max_pixels) return;
    throw InputError(source + ": " + std::to_string(width) + " x " + std::to_string(height) +
                     " pixels is over the limit of " + std::to_string(read_options.max_pixels) +
                     " (raise ModelOptions.max_image_pixels)");
  }

  std::vector<Detection> predict(const torch::Tensor& image) {
    std::lock_guard<std::mutex> lock(mutex);
    ImagePrediction p = predictor.predict(image);
    // p.results[k] is detection k (engine/coco_results.h: one result per detection, in order).
    const torch::Tensor labels = p.detections.labels.to(torch::kInt64).contiguous();
    const auto& names = predictor.class_names();
    std::vector<Detection> out;
    out.reserve(p.results.size());
    for (size_t k = 0; k < p.results.size(); ++k) {
      const coco::Detection& r = p.results[k];
      Detection d;
      d.category_id = r.category_id;
      const int64_t label = labels[static_cast<int64_t>(k)].item<int64_t>();
      d.category_name = class_name(names, label);
      d.score = r.score;
      d.box = r.bbox;
      if (r.mask) {
        d.mask.height = static_cast<int>(r.mask->h);
        d.mask.width = static_cast<int>(r.mask->w);
        d.mask.counts = coco::to_string(*r.mask);
      }
      out.push_back(std::move(d));
    }
    return out;
  }
};

Model::Model(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

Model Model::load(const std::string& path, const ModelOptions& options) {
  options.validate();
  // As predict's command line: only what was set.
  ModelOverrides overrides = overrides_from(options.score_thresh, options.detections_per_image, options.mask_paste,
                                            options.min_size, options.max_size, "ModelOptions.mask_paste");
  overrides.precision = ops::inference_precision_named(options.precision, "ModelOptions.precision");
  if (options.blas_threads > 0) set_openblas_threads(options.blas_threads);
  torch::set_num_threads(options.threads > 0 ? options.threads
                                             : static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  auto impl = std::make_shared<Impl>(load_model(path, overrides));
  impl->precision = ops::to_string(overrides.precision);
  const auto& transform = impl->predictor.loaded().model->options().transform;
  if ((options.min_size > 0 || options.max_size > 0) && transform.max_size < transform.min_size.back()) {
    throw ConfigError("ModelOptions.max_size " + std::to_string(transform.max_size) + " is below the input size " +
                      std::to_string(transform.min_size.back()));
  }
  if (options.max_image_pixels > 0) impl->read_options.max_pixels = options.max_image_pixels;
  impl->read_options.max_pixels_setting = "ModelOptions.max_image_pixels";
  return Model(std::move(impl));
}

std::vector<Detection> Model::predict(const cv::Mat& image) const {
  if (image.empty()) throw InputError("cv::Mat: empty picture");
  impl_->check_pixels(image.cols, image.rows, "cv::Mat");
  return impl_->predict(data::image_rgb_from_bgr(image, "cv::Mat"));
}

std::vector<Detection> Model::predict(const at::Tensor& image) const {
  if (!image.defined() || image.dim() != 3 || image.size(0) != 3 || image.scalar_type() != torch::kFloat ||
      !image.device().is_cpu()) {
    throw InputError("tensor: need [3, H, W] float RGB on the CPU, got " +
                     (image.defined() ? c10::str(image.sizes(), " ", image.scalar_type(), " on ", image.device())
                                      : std::string("an undefined tensor")));
  }
  impl_->check_pixels(image.size(2), image.size(1), "tensor");
  return impl_->predict(image);
}

std::vector<Detection> Model::predict_file(const std::string& path) const {
  return impl_->predict(data::read_image_rgb(path, impl_->read_options));
}

ModelInfo Model::info() const {
  const LoadedModel& loaded = impl_->predictor.loaded();
  const MaskRcnnOptions& o = loaded.model->options();
  ModelInfo info;
  info.weights = loaded.weights;
  info.config_file = loaded.config_file;
  // torchvision's builder names: the v2 variant normalises its FPN (MaskRcnnOptions::v2()).
  info.architecture = "maskrcnn_resnet" + std::to_string(o.backbone.depth) + "_fpn" +
                      (o.backbone.fpn_norm == NormKind::kNone ? "" : "_v2");
  info.backbone_depth = o.backbone.depth;
  info.num_classes = o.num_classes;
  const auto& names = impl_->predictor.class_names();
  for (int64_t label = 1; label < o.num_classes; ++label) {
    info.category_ids.push_back(impl_->predictor.category_id_of(label));
    info.category_names.push_back(class_name(names, label));
  }
  for (const int64_t s : o.transform.min_size) info.min_size.push_back(static_cast<int>(s));
  info.max_size = static_cast<int>(o.transform.max_size);
  info.score_thresh = o.roi_heads.score_thresh;
  info.detections_per_image = static_cast<int>(o.roi_heads.detections_per_img);
  info.mask_paste = to_string(o.mask_paste);
  info.precision = impl_->precision;
  return info;
}

}  // namespace instseg
