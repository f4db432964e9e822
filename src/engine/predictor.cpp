#include "instseg/engine/predictor.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "instseg/common/atomic_file.h"
#include "instseg/common/progress_bar.h"
#include "instseg/data/image_io.h"
#include "instseg/engine/model_factory.h"
#include "instseg/engine/results_json.h"
#include "instseg/engine/train_config.h"
#include "instseg/errors.h"
#include "instseg/io/class_names.h"
#include "instseg/io/overlay.h"

namespace instseg {

namespace fs = std::filesystem;

void PredictOptions::validate() const {
  if (weights.empty()) throw ConfigError("predict: --weights is required");
  if (inputs.empty()) throw ConfigError("predict: --input is required");
  if (out_dir.empty()) throw ConfigError("predict: --out is required");
  if (!(score_thresh >= 0.0 && score_thresh <= 1.0)) {
    throw ConfigError("predict: --score-thresh must be in [0, 1], got " + std::to_string(score_thresh));
  }
  if (min_size < 0 || max_size < 0 || (min_size > 0 && max_size > 0 && max_size < min_size)) {
    throw ConfigError("predict: need 0 < --min-size <= --max-size (0 = automatic), got " + std::to_string(min_size) +
                      " and " + std::to_string(max_size));
  }
  if (threads < 0) throw ConfigError("predict: --threads must be >= 0");
  if (!mask_paste.empty()) mask_paste_named(mask_paste, "predict: --mask-paste");
}

namespace {

bool is_image_file(const fs::path& path) {
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  static const char* const kExtensions[] = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"};
  return std::any_of(std::begin(kExtensions), std::end(kExtensions), [&](const char* e) { return ext == e; });
}

double median(std::vector<double> values) {
  if (values.empty()) return 0.0;
  std::sort(values.begin(), values.end());
  const size_t mid = values.size() / 2;
  return values.size() % 2 ? values[mid] : 0.5 * (values[mid - 1] + values[mid]);
}

// A model is only good at the scale it was trained at: one trained by instseg (config.json beside
// the weights) is run at its training size, and pastes masks as it was validated, unless the user
// asks otherwise.
ModelOverrides overrides_for(const PredictOptions& options) {
  ModelOverrides overrides;
  overrides.min_size = 800;  // torchvision's transform defaults
  overrides.max_size = 1333;
  overrides.score_thresh = options.score_thresh;
  overrides.mask_paste = MaskPaste::kTorchvision;
  const fs::path config_file = fs::path(options.weights).parent_path() / "config.json";
  if (fs::exists(config_file)) {
    const TrainConfig trained = load_train_config(config_file.string());
    overrides.min_size = trained.model.min_sizes.back();  // torchvision tests at the last size
    overrides.max_size = trained.model.max_size;
    overrides.mask_paste = mask_paste_named(trained.model.mask_paste, config_file.string() + ": model.mask_paste");
  }
  if (!options.mask_paste.empty()) overrides.mask_paste = mask_paste_named(options.mask_paste, "predict: --mask-paste");
  if (options.min_size > 0) overrides.min_size = options.min_size;
  if (options.max_size > 0) overrides.max_size = options.max_size;
  if (*overrides.max_size < *overrides.min_size) {
    throw ConfigError("predict: --max-size " + std::to_string(*overrides.max_size) + " is below the input size " +
                      std::to_string(*overrides.min_size));
  }
  return overrides;
}

}  // namespace

std::vector<std::string> collect_image_paths(const std::vector<std::string>& inputs) {
  std::vector<std::string> paths;
  for (const auto& input : inputs) {
    const fs::path path(input);
    std::error_code ec;
    if (fs::is_directory(path, ec)) {
      std::vector<std::string> found;
      for (const auto& entry : fs::directory_iterator(path)) {
        if (entry.is_regular_file() && is_image_file(entry.path())) found.push_back(entry.path().string());
      }
      std::sort(found.begin(), found.end());
      if (found.empty()) throw InputError(input + ": folder holds no image files (.jpg, .png, ...)");
      paths.insert(paths.end(), found.begin(), found.end());
    } else if (fs::exists(path, ec)) {
      paths.push_back(input);
    } else {
      throw InputError(input + ": no such file or folder");
    }
  }
  return paths;
}

PredictSummary run_predict(const PredictOptions& options) {
  options.validate();
  torch::set_num_threads(options.threads > 0 ? options.threads
                                             : static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  const auto image_paths = collect_image_paths(options.inputs);

  MaskRcnn model = load_mask_rcnn(options.weights, overrides_for(options));

  std::map<std::string, int64_t> image_ids;  // file name -> COCO image id
  if (!options.coco_gt.empty()) image_ids = image_ids_by_file_name(options.coco_gt);

  // A model trained by instseg carries its classes in categories.json beside the weights;
  // torchvision's COCO models use COCO's ids as labels.
  std::optional<data::CategoryMap> categories;
  const fs::path categories_file = fs::path(options.weights).parent_path() / "categories.json";
  if (fs::exists(categories_file)) {
    std::ifstream in(categories_file);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    categories = data::CategoryMap::from_json(text, categories_file.string());
  }
  const auto names = categories ? categories->class_names() : coco_class_names();

  fs::create_directories(options.out_dir);
  OverlayOptions overlay_options;
  overlay_options.show_thresh = options.show_thresh;

  PredictSummary summary;
  ResultsJsonWriter results;
  std::vector<double> model_seconds;
  ProgressBar progress(static_cast<int64_t>(image_paths.size()), "predict", "img");
  const bool show_progress = options.progress && image_paths.size() > 1;
  torch::InferenceMode inference;
  for (size_t i = 0; i < image_paths.size(); ++i) {
    const std::string& path = image_paths[i];
    try {
      const std::string file_name = fs::path(path).filename().string();
      const torch::Tensor image = data::read_image_rgb(path);
      int64_t image_id = static_cast<int64_t>(i) + 1;
      if (!options.coco_gt.empty()) {
        const auto it = image_ids.find(file_name);
        if (it == image_ids.end()) throw InputError(path + ": file name not found in " + options.coco_gt);
        image_id = it->second;
      }
      const auto start = std::chrono::steady_clock::now();
      const Detections detections = model->predict({image})[0];
      const Detections labelled = categories ? with_category_ids(detections, *categories) : detections;
      model_seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
      results.add(image_id, file_name, labelled);
      summary.detections += static_cast<int>(detections.scores.size(0));
      if (options.overlays) {
        const fs::path stem = fs::path(file_name).stem();
        write_bytes_atomically((fs::path(options.out_dir) / (stem.string() + ".overlay.jpg")).string(),
                               render_overlay(image, detections, names, overlay_options, ".jpg"));
      }
      ++summary.images_done;
    } catch (const InputError& e) {
      summary.failures.push_back(e.what());
      std::cerr << "\nerror: " << e.what() << "\n";
    }
    if (show_progress) progress.update(static_cast<int64_t>(i) + 1);
  }
  if (show_progress) progress.finish();
  write_bytes_atomically((fs::path(options.out_dir) / "predictions.json").string(), results.dump());
  summary.seconds_per_image = median(model_seconds);
  return summary;
}

}  // namespace instseg
