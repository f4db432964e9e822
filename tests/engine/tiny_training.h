#pragma once
// The tiny synthetic training run the engine tests share: ResNet-18-FPN v1 with trainable batch
// norm on 128x128 synthetic shapes (4 classes), small RPN/RoI budgets, the demo's narrow heads,
// two threads, no progress bar.
#include "instseg/engine/train_config.h"
#include "support/test_dir.h"

namespace instseg::testing {

inline TrainConfig tiny_train_config() {
  TrainConfig c;
  c.data.kind = "synthetic";
  c.data.synthetic_image_size = 128;
  c.data.synthetic_train_images = 64;
  c.data.synthetic_val_images = 8;
  c.model.options.backbone.depth = 18;
  c.model.options.backbone.norm = NormKind::kBatchNorm;
  c.model.options.backbone.trainable_layers = 5;
  c.model.options.transform.min_size = {128};
  c.model.options.transform.max_size = 128;
  c.model.options.rpn.post_nms_top_n_train = 100;
  c.model.options.rpn.post_nms_top_n_test = 100;
  c.model.options.roi_heads.batch_size_per_image = 64;
  c.model.options.backbone.out_channels = 64;
  c.model.options.roi_heads.representation_size = 256;
  c.model.options.roi_heads.mask_channels = 64;
  c.optim.batch_size = 2;
  c.optim.iterations = 20;
  c.optim.warmup_iterations = 5;
  c.optim.lr = 0.01;
  c.optim.clip_grad_norm = 10.0;  // as the demo: from-scratch runs have early loss spikes
  c.run.progress = false;
  c.run.threads = 2;
  c.run.log_every = 5;
  c.run.eval_every = 0;
  c.run.checkpoint_every = 1000;
  return c;
}

}  // namespace instseg::testing
