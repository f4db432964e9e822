#pragma once
// Everything a training run needs, as plain structs with documented defaults. A JSON config file
// maps onto them key by key ("optim.lr": 0.02 or {"optim": {"lr": 0.02}}); --set key=value
// overrides one key; unknown keys and wrong types are ConfigErrors naming the key.
#include <string>
#include <utility>
#include <vector>

#include "instseg/modeling/mask_rcnn.h"

namespace instseg {

struct DataConfig {
  std::string kind = "coco";          // "coco" | "folder" | "synthetic"
  std::string train_annotations;      // coco: instances JSON of the training split
  std::string train_images;           // coco/folder: image folder (folder: dataset root)
  std::string val_annotations;        // coco: instances JSON of the validation split (optional)
  std::string val_images;
  int synthetic_train_images = 2000;  // synthetic: sizes of the generated splits
  int synthetic_val_images = 100;
  int synthetic_image_size = 256;
  int synthetic_min_objects = 2;      // synthetic: shapes per image, uniform in [min, max]
  int synthetic_max_objects = 6;
  // synthetic: the validation split's shapes per image; -1 = as the training split. Denser
  // training images give the heads more instances per backbone pass than the split scored.
  int synthetic_val_min_objects = -1;
  int synthetic_val_max_objects = -1;
  // The validation split's shapes per image as (min, max), with -1 resolved to the training split's.
  std::pair<int, int> synthetic_val_objects() const;
  double synthetic_min_shape_size = 0.15;  // synthetic: shape diameter / image side, uniform in [min, max]
  double synthetic_max_shape_size = 0.40;
  double synthetic_min_visible_fraction = 0.4;  // synthetic: how much of a shape occlusion must leave
  int seed = 1;                       // synthetic generator seed (the data, not the training order)
  bool horizontal_flip = true;        // augmentation: flip with probability 0.5
  // coco/folder: images whose header declares more pixels are refused before decoding; the same
  // default as predict's --max-image-pixels (data::kDefaultMaxImagePixels), at most 2^30.
  int max_image_pixels = 100'000'000;
};

// The model: every field of MaskRcnnOptions under its own key ("model.rpn.nms_thresh",
// "model.backbone.depth", ...: the same names validate() uses), over a preset. The key list and the
// older flat names that are still read: docs/training.md.
struct ModelConfig {
  // "v1" | "v2": torchvision's maskrcnn_resnet50_fpn / _v2 (MaskRcnnOptions::v1() / v2()). Choosing
  // a preset never overrides a model key set by the same config, wherever that key comes.
  std::string preset = "v1";
  MaskRcnnOptions options;  // the model itself; training sets num_classes from the data
  std::string weights;      // start training from: a torchvision Mask R-CNN or ImageNet ResNet .pth
  // The model keys set explicitly (by a file or --set), as (key, JSON value), in order: replayed over
  // a preset chosen later. Not written to config.json, which lists every key.
  std::vector<std::pair<std::string, std::string>> explicit_keys;
  bool is_set(const std::string& key) const;  // key as "model.num_classes"
  // `base` with the explicitly set keys applied over it (a config.json written by hand that names
  // only some keys, completed from what a checkpoint shows).
  MaskRcnnOptions over(MaskRcnnOptions base) const;
};

struct OptimConfig {
  int iterations = 1000;
  int batch_size = 2;                 // images per micro-batch (per rank)
  // Micro-batches per optimizer step, their gradients averaged: one iteration (step) trains on
  // the global batch of world size x batch_size x accumulate images, which optim.lr is the rate for.
  int accumulate = 1;
  std::string optimizer = "sgd";      // "sgd" (torch.optim.SGD) | "adamw" (torch.optim.AdamW)
  double lr = 0.02;
  double momentum = 0.9;              // SGD only
  double weight_decay = 1e-4;         // SGD: L2 term in the gradient; AdamW: decoupled decay
  double beta1 = 0.9;                 // AdamW only: moment decay rates
  double beta2 = 0.999;
  int warmup_iterations = 100;        // linear warm-up from lr * warmup_factor
  double warmup_factor = 0.001;
  std::string schedule = "step";      // "step" (x gamma at each of steps) | "cosine" (to 0)
  std::vector<int> steps{};           // step schedule milestones (iterations)
  double gamma = 0.1;
  double clip_grad_norm = 0.0;        // 0 = off
  // "fp32" | "bf16" | "auto": the forward pass under CPU autocast to bfloat16 (ops/mixed_precision.h);
  // weights, losses and the optimizer stay fp32. Fast only on CPUs with AVX512-BF16: "auto" times
  // fp32 and bf16 at start-up where the CPU has bf16 natively and keeps the faster
  // (engine/step_settings.h), fp32 elsewhere (where bf16 is emulated and slower).
  std::string precision = "fp32";
  // "contiguous" | "channels_last" | "auto": the activations' memory layout in training steps.
  // Same numbers within float rounding; "auto" times both at start-up with the precision's
  // candidates. The defaults time nothing, so a run's arithmetic never depends on the machine's load.
  std::string memory_format = "contiguous";
};

struct RunConfig {
  int log_every = 20;                 // iterations between JSON-lines log records
  int eval_every = 500;               // iterations between validations (0 = only at the end)
  int checkpoint_every = 500;         // iterations between checkpoints (the last one always)
  int seed = 42;                      // training randomness: data order, flips, sampling
  int threads = 0;                    // 0 = every core
  double time_limit_minutes = 0.0;    // stop (and finish cleanly) after this long; 0 = no limit
  int stop_after = 0;                 // stop after this many iterations in this invocation (0 = run
                                      // to optim.iterations); --resume continues from there
  bool progress = true;
  // In a launched job: how long a rank waits for the others (joining, each collective) before it
  // fails naming the ranks that fell behind. The CLI passes it to dist::join; train() does not join.
  int distributed_timeout_seconds = 300;
};

struct TrainConfig {
  DataConfig data;
  ModelConfig model;
  OptimConfig optim;
  RunConfig run;

  void validate() const;  // throws ConfigError naming the key
  // Applies a JSON object (// comments allowed) ({"optim": {"lr": 0.01}} or {"optim.lr": 0.01}); `source` names it in errors.
  void apply_json(const std::string& json_text, const std::string& source);
  // Applies one "key=value" override; the value is JSON (numbers, lists, true) or a bare string.
  void apply_override(const std::string& assignment);
  std::string to_json() const;  // every key, for the run folder's config.json
};

TrainConfig load_train_config(const std::string& path);  // defaults, then the file

// The settings of `options` under the config's model keys ({"backbone": {"depth": 50}, ...}), as a
// JSON object's text: what a run folder's config.json holds and predict prints.
std::string model_options_json(const MaskRcnnOptions& options);

}  // namespace instseg
