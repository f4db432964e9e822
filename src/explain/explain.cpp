// run_explain: checks the inputs, builds the model, runs the two views.
#include "instseg/explain/explain.h"

#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <optional>
#include <thread>

#include "explain_input.h"
#include "figure_writer.h"
#include "inference_view.h"
#include "instseg/data/coco_dataset.h"
#include "instseg/data/image_io.h"
#include "instseg/engine/model_factory.h"
#include "instseg/engine/train_config.h"
#include "instseg/errors.h"
#include "instseg/io/class_names.h"
#include "training_view.h"

namespace instseg {

namespace fs = std::filesystem;

namespace {

void validate(const ExplainOptions& options) {
  if (options.weights.empty() && options.gt.empty()) {
    throw InputError("explain needs --weights (what a model computes on the image), --gt (how training sees "
                     "it), or both");
  }
  if (!options.weights.empty() && !options.config.empty()) {
    throw InputError("explain: --config describes a model to start training from; with --weights the model is "
                     "the checkpoint's (give one of them)");
  }
  if (options.input.empty()) throw InputError("explain: --input names no image");
  if (options.out_dir.empty()) throw InputError("explain: --out names no folder");
  if (options.min_size < 0) throw ConfigError("explain: --min-size must be >= 0, got " + std::to_string(options.min_size));
  if (options.max_size < 0) throw ConfigError("explain: --max-size must be >= 0, got " + std::to_string(options.max_size));
  if (options.format != "png" && options.format != "jpg") {
    throw ConfigError("explain: --format must be png or jpg, got \"" + options.format + "\"");
  }
  if (options.threads < 0) throw ConfigError("explain: --threads must be >= 0, got " + std::to_string(options.threads));
}

// The image's ground truth from a COCO instances file, found by the image's file name.
data::Sample ground_truth(const ExplainOptions& options, data::CategoryMap& categories) {
  const fs::path input(options.input);
  data::CocoDataset dataset(options.gt, input.parent_path().string(), {}, /*check_images=*/false);
  int64_t index = dataset.index_of_file(input.filename().string());
  if (index < 0) {
    throw InputError(options.gt + ": no image with file_name \"" + input.filename().string() + "\" (explain " +
                     "finds --input in --gt by its file name)");
  }
  categories = dataset.categories();
  return dataset.get(index);
}

// Ground-truth labels are the file's (1..K by category id); a model with weights has its own: a
// torchvision COCO model's labels are COCO category ids, an instseg model's come from its
// categories.json. Maps each target through its category id.
void relabel_for_model(Targets& targets, const data::CategoryMap& file, const std::optional<data::CategoryMap>& model,
                       const std::string& gt_path) {
  auto labels = targets.labels.clone();
  auto* l = labels.data_ptr<int64_t>();
  for (int64_t i = 0; i < labels.numel(); ++i) {
    const int64_t id = file.category_id_of(l[i]);
    if (!model) {
      l[i] = id;
    } else if (model->contains(id)) {
      l[i] = model->label_of(id);
    } else {
      throw InputError(gt_path + ": category id " + std::to_string(id) + " (" + file.name_of(file.label_of(id)) +
                       ") of the image is not one of the model's classes (categories.json beside the weights)");
    }
  }
  targets.labels = labels;
}

}  // namespace

ExplainResult run_explain(const ExplainOptions& options) {
  validate(options);
  torch::set_num_threads(options.threads > 0 ? options.threads
                                             : static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  explain::ExplainInput input;
  input.seed = options.seed;
  input.image_name = fs::path(options.input).filename().string();

  data::CategoryMap gt_categories;
  if (!options.gt.empty()) {
    data::Sample sample = ground_truth(options, gt_categories);
    input.image = sample.image;
    input.targets = std::move(sample.targets);
  } else {
    input.image = data::read_image_rgb(options.input);
  }

  ModelOverrides overrides;
  if (options.min_size > 0) overrides.min_size = options.min_size;
  if (options.max_size > 0) overrides.max_size = options.max_size;
  if (!options.weights.empty()) {
    LoadedModel loaded = load_model(options.weights, overrides);
    input.model = loaded.model;
    input.has_weights = true;
    input.class_names = loaded.categories ? loaded.categories->class_names() : coco_class_names();
    if (input.targets) relabel_for_model(*input.targets, gt_categories, loaded.categories, options.gt);
  } else {
    // What a run starts from: the config's model (torchvision's v1 architecture without one) for
    // the file's classes, initialised from the seed.
    TrainConfig config;
    if (!options.config.empty()) config = load_train_config(options.config);
    if (overrides.min_size) config.model.options.transform.min_size = {*overrides.min_size};
    if (overrides.max_size) config.model.options.transform.max_size = *overrides.max_size;
    torch::manual_seed(options.seed);
    input.model = build_mask_rcnn_for_training(config.model, gt_categories.num_classes());
    input.model->eval();
    input.class_names = gt_categories.class_names();
  }

  std::error_code ec;
  fs::create_directories(options.out_dir, ec);
  if (ec) throw InputError(options.out_dir + ": cannot create the output folder: " + ec.message());
  explain::FigureWriter writer(options.out_dir, options.format, options.progress);
  if (input.targets) explain::explain_training(input, writer);
  if (input.has_weights) explain::explain_inference(input, writer);
  writer.write_index();
  return ExplainResult{writer.figures()};
}

}  // namespace instseg
