#include "instseg/engine/train_config.h"

#include <algorithm>
#include <fstream>
#include <array>
#include <functional>
#include <map>
#include <type_traits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "instseg/engine/model_factory.h"
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
struct is_std_array : std::false_type {};
template <class T, size_t N>
struct is_std_array<std::array<T, N>> : std::true_type {};

template <class T>
bool has_type(const json& j) {
  if constexpr (std::is_same_v<T, bool>) {
    return j.is_boolean();
  } else if constexpr (std::is_integral_v<T>) {
    return j.is_number_integer();
  } else if constexpr (std::is_floating_point_v<T>) {
    return j.is_number();
  } else if constexpr (std::is_same_v<T, std::string>) {
    return j.is_string();
  } else if constexpr (is_std_array<T>::value) {
    return j.is_array() && j.size() == std::tuple_size_v<T> &&
           std::all_of(j.begin(), j.end(), [](const json& e) { return has_type<typename T::value_type>(e); });
  } else {  // std::vector<...>
    return j.is_array() &&
           std::all_of(j.begin(), j.end(), [](const json& e) { return has_type<typename T::value_type>(e); });
  }
}

template <class T>
Field field(T& value) {
  return {[&value](const json& j) {
            if (!has_type<T>(j)) throw json::type_error::create(302, "wrong type", &j);
            value = j.get<T>();
          },
          [&value] { return json(value); }};
}

// An enum under its config vocabulary: `named` parses (throwing ConfigError naming the key).
template <class E>
Field enum_field(E& value, const std::string& key, E (*named)(const std::string&, const std::string&),
                 std::string (*name_of)(E)) {
  return {[&value, key, named](const json& j) {
            if (!j.is_string()) throw json::type_error::create(302, "wrong type", &j);
            value = named(j.get<std::string>(), key);
          },
          [&value, name_of] { return json(name_of(value)); }};
}


// The model's keys: MaskRcnnOptions field by field, under the names its validate() uses.
void add_model_fields(std::map<std::string, Field>& f, MaskRcnnOptions& o) {
  f.emplace("model.num_classes", field(o.num_classes));
  auto& b = o.backbone;
  f.emplace("model.backbone.depth", field(b.depth));
  f.emplace("model.backbone.norm", enum_field(b.norm, "model.backbone.norm", &norm_kind_named, &to_string));
  f.emplace("model.backbone.trainable_layers", field(b.trainable_layers));
  f.emplace("model.backbone.fpn_norm", enum_field(b.fpn_norm, "model.backbone.fpn_norm", &norm_kind_named, &to_string));
  f.emplace("model.backbone.out_channels", field(b.out_channels));
  f.emplace("model.backbone.returned_layers", field(b.returned_layers));
  auto& t = o.transform;
  f.emplace("model.transform.min_size", field(t.min_size));
  f.emplace("model.transform.max_size", field(t.max_size));
  f.emplace("model.transform.image_mean", field(t.image_mean));
  f.emplace("model.transform.image_std", field(t.image_std));
  f.emplace("model.transform.size_divisible", field(t.size_divisible));
  f.emplace("model.anchors.sizes", field(o.anchors.sizes));
  f.emplace("model.anchors.aspect_ratios", field(o.anchors.aspect_ratios));
  auto& r = o.rpn;
  f.emplace("model.rpn.pre_nms_top_n_train", field(r.pre_nms_top_n_train));
  f.emplace("model.rpn.pre_nms_top_n_test", field(r.pre_nms_top_n_test));
  f.emplace("model.rpn.post_nms_top_n_train", field(r.post_nms_top_n_train));
  f.emplace("model.rpn.post_nms_top_n_test", field(r.post_nms_top_n_test));
  f.emplace("model.rpn.nms_thresh", field(r.nms_thresh));
  f.emplace("model.rpn.score_thresh", field(r.score_thresh));
  f.emplace("model.rpn.min_size", field(r.min_size));
  f.emplace("model.rpn.fg_iou_thresh", field(r.fg_iou_thresh));
  f.emplace("model.rpn.bg_iou_thresh", field(r.bg_iou_thresh));
  f.emplace("model.rpn.batch_size_per_image", field(r.batch_size_per_image));
  f.emplace("model.rpn.positive_fraction", field(r.positive_fraction));
  f.emplace("model.rpn.conv_depth", field(r.conv_depth));
  auto& h = o.roi_heads;
  f.emplace("model.roi_heads.score_thresh", field(h.score_thresh));
  f.emplace("model.roi_heads.nms_thresh", field(h.nms_thresh));
  f.emplace("model.roi_heads.detections_per_img", field(h.detections_per_img));
  f.emplace("model.roi_heads.fg_iou_thresh", field(h.fg_iou_thresh));
  f.emplace("model.roi_heads.bg_iou_thresh", field(h.bg_iou_thresh));
  f.emplace("model.roi_heads.batch_size_per_image", field(h.batch_size_per_image));
  f.emplace("model.roi_heads.positive_fraction", field(h.positive_fraction));
  f.emplace("model.roi_heads.bbox_reg_weights", field(h.bbox_reg_weights));
  f.emplace("model.roi_heads.box_head",
            enum_field(h.box_head, "model.roi_heads.box_head", &box_head_kind_named, &to_string));
  f.emplace("model.roi_heads.head_norm", enum_field(h.head_norm, "model.roi_heads.head_norm", &norm_kind_named, &to_string));
  f.emplace("model.roi_heads.representation_size", field(h.representation_size));
  f.emplace("model.roi_heads.mask_channels", field(h.mask_channels));
  f.emplace("model.mask_paste", enum_field(o.mask_paste, "model.mask_paste", &mask_paste_named, &to_string));
}

std::map<std::string, Field> fields(TrainConfig& c) {
  std::map<std::string, Field> f = {
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
      {"model.preset", field(c.model.preset)},
      {"model.weights", field(c.model.weights)},
      {"optim.iterations", field(c.optim.iterations)},
      {"optim.batch_size", field(c.optim.batch_size)},
      {"optim.accumulate", field(c.optim.accumulate)},
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
      {"optim.memory_format", field(c.optim.memory_format)},
      {"run.log_every", field(c.run.log_every)},
      {"run.eval_every", field(c.run.eval_every)},
      {"run.checkpoint_every", field(c.run.checkpoint_every)},
      {"run.seed", field(c.run.seed)},
      {"run.threads", field(c.run.threads)},
      {"run.time_limit_minutes", field(c.run.time_limit_minutes)},
      {"run.progress", field(c.run.progress)},
      {"run.stop_after", field(c.run.stop_after)},
      {"run.distributed_timeout_seconds", field(c.run.distributed_timeout_seconds)},
  };
  add_model_fields(f, c.model.options);
  return f;
}

// The flat model keys of configs written before the model section mirrored MaskRcnnOptions:
// still read, each as its new key (docs/training.md lists both).
struct Alias {
  const char* old_key;
  const char* new_key;
};
constexpr Alias kAliases[] = {
    {"model.variant", "model.preset"},
    {"model.depth", "model.backbone.depth"},
    {"model.norm", "model.backbone.norm"},
    {"model.trainable_layers", "model.backbone.trainable_layers"},
    {"model.min_sizes", "model.transform.min_size"},
    {"model.max_size", "model.transform.max_size"},
    {"model.rpn_post_nms_top_n_train", "model.rpn.post_nms_top_n_train"},
    {"model.rpn_post_nms_top_n_test", "model.rpn.post_nms_top_n_test"},
    {"model.box_batch_size_per_image", "model.roi_heads.batch_size_per_image"},
    {"model.detections_per_image", "model.roi_heads.detections_per_img"},
    {"model.fpn_channels", "model.backbone.out_channels"},
    {"model.box_representation_size", "model.roi_heads.representation_size"},
    {"model.mask_head_channels", "model.roi_heads.mask_channels"},
};

// The old key's value as its new key takes it: model.norm said frozen | batch | group.
json translate_alias(const std::string& old_key, const json& value) {
  if (old_key == "model.norm" && value.is_string()) {
    const std::string v = value.get<std::string>();
    if (v == "frozen") return "frozen_batch_norm";
    if (v == "batch") return "batch_norm";
    if (v == "group") return "group_norm";
  }
  return value;
}

bool is_model_option(const std::string& key) {
  return key.rfind("model.", 0) == 0 && key != "model.preset" && key != "model.weights";
}

// `shown` is the key as the user wrote it (an old name is shown with its new one).
void set_field(std::map<std::string, Field>& all, const std::string& key, const json& value, const std::string& source,
               const std::string& written) {
  const std::string shown = "'" + written + "'" + (written == key ? "" : " (now '" + key + "')");
  const auto it = all.find(key);
  if (it == all.end()) throw ConfigError(source + ": unknown key " + shown);
  try {
    it->second.set(value);
  } catch (const json::exception&) {
    throw ConfigError(source + ": key " + shown + " expects a value like " + it->second.get().dump() + ", got " +
                      value.dump());
  } catch (const ConfigError& e) {  // an enum's vocabulary: the message names the new key
    throw ConfigError(source + ": " + e.what() + (written != key ? " (given as '" + written + "')" : ""));
  }
}

// The preset's options with every explicitly set model key applied again on top.
void apply_preset(TrainConfig& config, const std::string& source) {
  const std::string& preset = config.model.preset;
  if (preset != "v1" && preset != "v2") {
    throw ConfigError(source + ": model.preset must be v1 or v2, got '" + preset + "'");
  }
  config.model.options = preset == "v2" ? MaskRcnnOptions::v2() : MaskRcnnOptions::v1();
  auto all = fields(config);
  for (const auto& [key, text] : config.model.explicit_keys) set_field(all, key, json::parse(text), source, key);
}

void set_key(TrainConfig& config, std::string key, json value, const std::string& source) {
  std::string shown = key;
  for (const auto& alias : kAliases) {
    if (key == alias.old_key) {
      value = translate_alias(key, value);
      key = alias.new_key;
      shown = alias.old_key;
    }
  }
  auto all = fields(config);
  set_field(all, key, value, source, shown);
  if (key == "model.preset") {
    apply_preset(config, source);
  } else if (is_model_option(key)) {
    auto& keys = config.model.explicit_keys;
    keys.erase(std::remove_if(keys.begin(), keys.end(), [&](const auto& entry) { return entry.first == key; }),
               keys.end());
    keys.emplace_back(key, value.dump());
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
  require(model.preset == "v1" || model.preset == "v2", "model.preset must be v1 or v2, got '" + model.preset + "'");
  try {
    model.options.validate();
  } catch (const ConfigError& e) {  // its messages name the field under MaskRcnnOptions
    throw ConfigError("model." + std::string(e.what()));
  }
  for (const int64_t s : model.options.transform.min_size) {
    require(s <= model.options.transform.max_size, "model.transform.min_size entries must be <= model.transform.max_size, got " +
                                                       std::to_string(s) + " > " +
                                                       std::to_string(model.options.transform.max_size));
  }
  require(optim.iterations > 0, "optim.iterations must be positive");
  require(optim.batch_size > 0, "optim.batch_size must be positive");
  require(optim.accumulate >= 1, "optim.accumulate must be >= 1 (micro-batches per optimizer step), got " +
                                     std::to_string(optim.accumulate));
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
  require(optim.precision == "fp32" || optim.precision == "bf16" || optim.precision == "auto",
          "optim.precision must be fp32, bf16 or auto, got '" + optim.precision + "'");
  require(optim.memory_format == "contiguous" || optim.memory_format == "channels_last" ||
              optim.memory_format == "auto",
          "optim.memory_format must be contiguous, channels_last or auto, got '" + optim.memory_format + "'");
  require(optim.clip_grad_norm >= 0, "optim.clip_grad_norm must be >= 0 (0 = off)");
  require(run.log_every > 0, "run.log_every must be positive");
  require(run.eval_every >= 0, "run.eval_every must be >= 0");
  require(run.checkpoint_every > 0, "run.checkpoint_every must be positive");
  require(run.threads >= 0, "run.threads must be >= 0");
  require(run.time_limit_minutes >= 0, "run.time_limit_minutes must be >= 0");
  require(run.stop_after >= 0, "run.stop_after must be >= 0");
  require(run.distributed_timeout_seconds > 0, "run.distributed_timeout_seconds must be positive, got " +
                                                   std::to_string(run.distributed_timeout_seconds));
}

void TrainConfig::apply_json(const std::string& json_text, const std::string& source) {
  json parsed;
  try {
    parsed = json::parse(json_text, nullptr, /*allow_exceptions=*/true, /*ignore_comments=*/true);
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

namespace {
// The fields whose key passes `keep`, nested by their dots ({"model": {"rpn": {...}}}).
json nested(std::map<std::string, Field>& all, const std::function<bool(const std::string&)>& keep, size_t strip = 0) {
  json out = json::object();
  for (const auto& [key, f] : all) {
    if (!keep(key)) continue;
    std::string pointer = "/" + key.substr(strip);
    std::replace(pointer.begin(), pointer.end(), '.', '/');
    out[json::json_pointer(pointer)] = f.get();
  }
  return out;
}
}  // namespace

std::string TrainConfig::to_json() const {
  TrainConfig copy = *this;  // fields() hands out setters too, so it needs a mutable config
  auto all = fields(copy);
  return nested(all, [](const std::string&) { return true; }).dump(2);
}

std::string model_options_json(const MaskRcnnOptions& options) {
  TrainConfig config;
  config.model.options = options;
  auto all = fields(config);
  return nested(all, is_model_option, std::string("model.").size()).dump(2);
}

bool ModelConfig::is_set(const std::string& key) const {
  return std::any_of(explicit_keys.begin(), explicit_keys.end(), [&](const auto& entry) { return entry.first == key; });
}

MaskRcnnOptions ModelConfig::over(MaskRcnnOptions base) const {
  TrainConfig config;
  config.model.options = std::move(base);
  auto all = fields(config);
  for (const auto& [key, text] : explicit_keys) set_field(all, key, json::parse(text), "model", key);
  return config.model.options;
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
