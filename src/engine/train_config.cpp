#include "instseg/engine/train_config.h"

#include <algorithm>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "instseg/errors.h"

namespace instseg {

using nlohmann::json;

namespace {

// Every key of the config with a reader and a writer, so files, --set and config.json share
// one list and an unknown key can be rejected.
struct Field {
  std::function<void(const json&)> set;
  std::function<json()> get;
};

// JSON's own conversions would turn 1000.5 into 1000 and true into 1: reject those instead.
template <class T>
bool has_type(const json& j) {
  if constexpr (std::is_same_v<T, bool>) return j.is_boolean();
  if constexpr (std::is_same_v<T, int>) return j.is_number_integer();
  if constexpr (std::is_same_v<T, double>) return j.is_number();
  if constexpr (std::is_same_v<T, std::string>) return j.is_string();
  if constexpr (std::is_same_v<T, std::vector<int>>) {
    return j.is_array() && std::all_of(j.begin(), j.end(), [](const json& e) { return e.is_number_integer(); });
  }
  return false;
}

template <class T>
Field field(T& value) {
  return {[&value](const json& j) {
            if (!has_type<T>(j)) throw json::type_error::create(302, "wrong type", &j);
            value = j.get<T>();
          },
          [&value] { return json(value); }};
}

std::map<std::string, Field> fields(TrainConfig& c) {
  return {
      {"data.kind", field(c.data.kind)},
      {"data.train_annotations", field(c.data.train_annotations)},
      {"data.train_images", field(c.data.train_images)},
      {"data.val_annotations", field(c.data.val_annotations)},
      {"data.val_images", field(c.data.val_images)},
      {"data.synthetic_train_images", field(c.data.synthetic_train_images)},
      {"data.synthetic_val_images", field(c.data.synthetic_val_images)},
      {"data.synthetic_image_size", field(c.data.synthetic_image_size)},
      {"data.synthetic_min_objects", field(c.data.synthetic_min_objects)},
      {"data.synthetic_max_objects", field(c.data.synthetic_max_objects)},
      {"data.synthetic_val_min_objects", field(c.data.synthetic_val_min_objects)},
      {"data.synthetic_val_max_objects", field(c.data.synthetic_val_max_objects)},
      {"data.synthetic_min_shape_size", field(c.data.synthetic_min_shape_size)},
      {"data.synthetic_max_shape_size", field(c.data.synthetic_max_shape_size)},
      {"data.synthetic_min_visible_fraction", field(c.data.synthetic_min_visible_fraction)},
      {"data.seed", field(c.data.seed)},
      {"data.horizontal_flip", field(c.data.horizontal_flip)},
      {"data.max_image_pixels", field(c.data.max_image_pixels)},
      {"model.variant", field(c.model.variant)},
      {"model.depth", field(c.model.depth)},
      {"model.norm", field(c.model.norm)},
      {"model.trainable_layers", field(c.model.trainable_layers)},
      {"model.weights", field(c.model.weights)},
      {"model.min_sizes", field(c.model.min_sizes)},
      {"model.max_size", field(c.model.max_size)},
      {"model.rpn_post_nms_top_n_train", field(c.model.rpn_post_nms_top_n_train)},
      {"model.rpn_post_nms_top_n_test", field(c.model.rpn_post_nms_top_n_test)},
      {"model.box_batch_size_per_image", field(c.model.box_batch_size_per_image)},
      {"model.detections_per_image", field(c.model.detections_per_image)},
      {"model.fpn_channels", field(c.model.fpn_channels)},
      {"model.box_representation_size", field(c.model.box_representation_size)},
      {"model.mask_head_channels", field(c.model.mask_head_channels)},
      {"model.mask_paste", field(c.model.mask_paste)},
      {"optim.iterations", field(c.optim.iterations)},
      {"optim.batch_size", field(c.optim.batch_size)},
      {"optim.lr", field(c.optim.lr)},
      {"optim.optimizer", field(c.optim.optimizer)},
      {"optim.momentum", field(c.optim.momentum)},
      {"optim.beta1", field(c.optim.beta1)},
      {"optim.beta2", field(c.optim.beta2)},
      {"optim.weight_decay", field(c.optim.weight_decay)},
      {"optim.warmup_iterations", field(c.optim.warmup_iterations)},
      {"optim.warmup_factor", field(c.optim.warmup_factor)},
      {"optim.schedule", field(c.optim.schedule)},
      {"optim.steps", field(c.optim.steps)},
      {"optim.gamma", field(c.optim.gamma)},
      {"optim.clip_grad_norm", field(c.optim.clip_grad_norm)},
      {"optim.precision", field(c.optim.precision)},
      {"run.log_every", field(c.run.log_every)},
      {"run.eval_every", field(c.run.eval_every)},
      {"run.checkpoint_every", field(c.run.checkpoint_every)},
      {"run.seed", field(c.run.seed)},
      {"run.threads", field(c.run.threads)},
      {"run.time_limit_minutes", field(c.run.time_limit_minutes)},
      {"run.progress", field(c.run.progress)},
      {"run.stop_after", field(c.run.stop_after)},
  };
}

void set_key(TrainConfig& config, const std::string& key, const json& value, const std::string& source) {
  auto all = fields(config);
  const auto it = all.find(key);
  if (it == all.end()) throw ConfigError(source + ": unknown key '" + key + "'");
  try {
    it->second.set(value);
  } catch (const json::exception&) {
    throw ConfigError(source + ": key '" + key + "' expects a value like " + it->second.get().dump() +
                      ", got " + value.dump());
  }
}

void apply_object(TrainConfig& config, const json& object, const std::string& prefix, const std::string& source) {
  for (const auto& [name, value] : object.items()) {
    const std::string key = prefix.empty() ? name : prefix + "." + name;
    if (value.is_object()) {
      apply_object(config, value, key, source);
    } else {
      set_key(config, key, value, source);
    }
  }
}

void require(bool ok, const std::string& message) {
  if (!ok) throw ConfigError(message);
}

}  // namespace

std::pair<int, int> DataConfig::synthetic_val_objects() const {
  return {synthetic_val_min_objects >= 0 ? synthetic_val_min_objects : synthetic_min_objects,
          synthetic_val_max_objects >= 0 ? synthetic_val_max_objects : synthetic_max_objects};
}

void TrainConfig::validate() const {
  require(data.kind == "coco" || data.kind == "folder" || data.kind == "synthetic",
          "data.kind must be coco, folder or synthetic, got '" + data.kind + "'");
  if (data.kind == "coco") {
    require(!data.train_annotations.empty(), "data.train_annotations is required for data.kind coco");
    require(!data.train_images.empty(), "data.train_images is required for data.kind coco");
  }
  if (data.kind == "folder") require(!data.train_images.empty(), "data.train_images is required for data.kind folder");
  require(data.synthetic_train_images > 0 && data.synthetic_val_images >= 0, "data.synthetic_*_images must be positive");
  require(data.synthetic_image_size >= 64, "data.synthetic_image_size must be >= 64");
  require(data.max_image_pixels >= 1 && data.max_image_pixels <= (1 << 30),
          "data.max_image_pixels must be in [1, 1073741824] (OpenCV decodes no more), got " +
              std::to_string(data.max_image_pixels));
  require(data.synthetic_min_objects >= 0 && data.synthetic_max_objects >= data.synthetic_min_objects,
          "data.synthetic_min_objects must be >= 0 and data.synthetic_max_objects >= it");
  require(data.synthetic_val_min_objects >= -1 && data.synthetic_val_max_objects >= -1,
          "data.synthetic_val_min_objects and data.synthetic_val_max_objects must be >= 0, or -1 for the training split's");
  const auto [val_min, val_max] = data.synthetic_val_objects();
  require(val_max >= val_min, "the validation split's shapes per image: data.synthetic_val_max_objects (or "
                              "data.synthetic_max_objects) must be >= data.synthetic_val_min_objects (or "
                              "data.synthetic_min_objects), got " + std::to_string(val_min) + ".." + std::to_string(val_max));
  require(data.synthetic_min_shape_size > 0 && data.synthetic_max_shape_size >= data.synthetic_min_shape_size &&
              data.synthetic_max_shape_size <= 1,
          "data.synthetic_min_shape_size must be > 0 and data.synthetic_max_shape_size in [it, 1]");
  require(data.synthetic_min_visible_fraction >= 0 && data.synthetic_min_visible_fraction <= 1,
          "data.synthetic_min_visible_fraction must be in [0, 1]");
  require(model.variant == "v1" || model.variant == "v2", "model.variant must be v1 or v2, got '" + model.variant + "'");
  require(model.depth == 18 || model.depth == 34 || model.depth == 50 || model.depth == 101,
          "model.depth must be 18, 34, 50 or 101, got " + std::to_string(model.depth));
  require(model.norm == "frozen" || model.norm == "batch" || model.norm == "group",
          "model.norm must be frozen, batch or group, got '" + model.norm + "'");
  require(model.trainable_layers >= 0 && model.trainable_layers <= 5, "model.trainable_layers must be in 0..5");
  require(!model.min_sizes.empty(), "model.min_sizes must list at least one size");
  for (int s : model.min_sizes) require(s > 0 && s <= model.max_size, "model.min_sizes must be in (0, model.max_size]");
  require(model.rpn_post_nms_top_n_train > 0 && model.rpn_post_nms_top_n_test > 0, "model.rpn_post_nms_top_n_* must be positive");
  require(model.box_batch_size_per_image > 0, "model.box_batch_size_per_image must be positive");
  require(model.detections_per_image > 0, "model.detections_per_image must be positive");
  require(model.mask_paste == "torchvision" || model.mask_paste == "aligned",
          "model.mask_paste must be torchvision or aligned, got '" + model.mask_paste + "'");
  require(model.fpn_channels > 0 && model.box_representation_size > 0 && model.mask_head_channels > 0,
          "model.fpn_channels, model.box_representation_size and model.mask_head_channels must be positive");
  require(optim.iterations > 0, "optim.iterations must be positive");
  require(optim.batch_size > 0, "optim.batch_size must be positive");
  require(optim.lr > 0, "optim.lr must be positive");
  require(optim.optimizer == "sgd" || optim.optimizer == "adamw",
          "optim.optimizer must be sgd or adamw, got '" + optim.optimizer + "'");
  require(optim.momentum >= 0 && optim.momentum < 1, "optim.momentum must be in [0, 1)");
  require(optim.beta1 >= 0 && optim.beta1 < 1, "optim.beta1 must be in [0, 1)");
  require(optim.beta2 >= 0 && optim.beta2 < 1, "optim.beta2 must be in [0, 1)");
  require(optim.weight_decay >= 0, "optim.weight_decay must be >= 0");
  require(optim.warmup_iterations >= 0, "optim.warmup_iterations must be >= 0");
  require(optim.warmup_factor > 0 && optim.warmup_factor <= 1, "optim.warmup_factor must be in (0, 1]");
  require(optim.schedule == "step" || optim.schedule == "cosine", "optim.schedule must be step or cosine, got '" + optim.schedule + "'");
  require(optim.gamma > 0, "optim.gamma must be positive");
  require(optim.precision == "fp32" || optim.precision == "bf16",
          "optim.precision must be fp32 or bf16, got '" + optim.precision + "'");
  require(optim.clip_grad_norm >= 0, "optim.clip_grad_norm must be >= 0 (0 = off)");
  require(run.log_every > 0, "run.log_every must be positive");
  require(run.eval_every >= 0, "run.eval_every must be >= 0");
  require(run.checkpoint_every > 0, "run.checkpoint_every must be positive");
  require(run.threads >= 0, "run.threads must be >= 0");
  require(run.time_limit_minutes >= 0, "run.time_limit_minutes must be >= 0");
  require(run.stop_after >= 0, "run.stop_after must be >= 0");
}

void TrainConfig::apply_json(const std::string& json_text, const std::string& source) {
  json parsed;
  try {
    parsed = json::parse(json_text);
  } catch (const json::parse_error& e) {
    throw ConfigError(source + ": not valid JSON (byte " + std::to_string(e.byte) + ")");
  }
  if (!parsed.is_object()) throw ConfigError(source + ": expected a JSON object");
  apply_object(*this, parsed, "", source);
}

void TrainConfig::apply_override(const std::string& assignment) {
  const auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0) {
    throw ConfigError("--set '" + assignment + "': expected key=value");
  }
  const std::string key = assignment.substr(0, eq);
  const std::string text = assignment.substr(eq + 1);
  // Numbers, booleans and lists are JSON; anything that does not parse is taken as a string.
  json value = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) value = text;
  set_key(*this, key, value, "--set " + key);
}

std::string TrainConfig::to_json() const {
  TrainConfig copy = *this;  // fields() hands out setters too, so it needs a mutable config
  json out = json::object();
  for (const auto& [key, f] : fields(copy)) {
    std::string pointer = "/" + key;
    pointer[pointer.find('.')] = '/';
    out[json::json_pointer(pointer)] = f.get();
  }
  return out.dump(2);
}

TrainConfig load_train_config(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw ConfigError(path + ": cannot open config file");
  std::stringstream text;
  text << in.rdbuf();
  TrainConfig config;
  config.apply_json(text.str(), path);
  return config;
}

}  // namespace instseg
