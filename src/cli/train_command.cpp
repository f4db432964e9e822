#include <CLI/CLI.hpp>

#include <iostream>

#include "cli/launched_job.h"
#include "instseg/cli/commands.h"
#include "instseg/engine/train_config.h"
#include "instseg/engine/trainer.h"

namespace instseg::cli {

void register_train(CLI::App& app) {
  struct Args {
    std::string config_path, out_dir;
    std::vector<std::string> overrides;
    bool resume = false, overwrite = false;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("train", "Train or fine-tune Mask R-CNN on COCO-format, folder or synthetic data");
  cmd->add_option("--config", args->config_path, "JSON config (see configs/); keys as in --set")->check(CLI::ExistingFile);
  cmd->add_option("--set", args->overrides, "Override one key, e.g. --set optim.lr=0.01 --set model.backbone.depth=18");
  auto* resume = cmd->add_flag("--resume", args->resume, "Continue from OUT/train_state.pth exactly where it stopped");
  cmd->add_flag("--overwrite", args->overwrite,
                "Replace the run already in OUT (removes the files a run writes there, nothing else)")
      ->excludes(resume);
  cmd->add_option("--out", args->out_dir, "Run folder (checkpoints, log.jsonl, metrics.json)")->required();
  cmd->footer(
      "Keys (docs/training.md lists them all; the model section mirrors MaskRcnnOptions, "
      "include/instseg/modeling/mask_rcnn.h): data.kind coco|folder|synthetic, data.train_annotations, "
      "data.train_images, data.val_annotations, data.val_images; model.preset v1|v2 (the keys below "
      "override it), model.weights (torchvision Mask R-CNN or ImageNet ResNet .pth), "
      "model.backbone.depth 18|34|50|101, model.backbone.norm "
      "frozen_batch_norm|batch_norm|group_norm|none, model.backbone.trainable_layers, "
      "model.transform.min_size, model.transform.max_size, model.rpn.post_nms_top_n_test, "
      "model.roi_heads.detections_per_img, model.roi_heads.box_head two_mlp|conv_fc, "
      "model.mask_paste torchvision|aligned; optim.iterations, optim.batch_size, optim.accumulate, optim.optimizer "
      "sgd|adamw, optim.lr, optim.schedule step|cosine, optim.steps, optim.precision fp32|bf16|auto, "
      "optim.memory_format contiguous|channels_last|auto; "
      "run.eval_every, ... The older names (model.variant, model.depth, model.norm frozen|batch|group, "
      "model.min_sizes, model.detections_per_image, ...) are still read.\n\n"
      "Data-parallel on several processes or machines (docs/distributed.md): launched by torchrun "
      "(torchrun --no_python --nproc_per_node 2 --redirects 2 --tee 2 instseg train ...), Slurm, or "
      "RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT set for each process, every rank trains on its "
      "share of each batch and rank 0 writes OUT; run.distributed_timeout_seconds bounds the wait for "
      "a rank that died or hangs.\n\n"
      "Examples:\n"
      "  instseg train --config configs/finetune_coco.json --out runs/first\n"
      "  instseg train --config configs/synthetic_scratch.json --set model.backbone.depth=18 \\\n"
      "      --set optim.iterations=2000 --out runs/small\n"
      "  instseg train --config configs/finetune_coco.json --out runs/first --resume");
  cmd->callback([args] {
    TrainConfig config = args->config_path.empty() ? TrainConfig{} : load_train_config(args->config_path);
    for (const auto& assignment : args->overrides) config.apply_override(assignment);
    // A launched job (torchrun, Slurm, the variables by hand): join it before anything else, so
    // that every rank trains with the communicator and only rank 0 writes the run folder. The
    // config is checked first: a mistake is reported at once, not after waiting for the others.
    config.validate();
    const auto job = join_launched_job(config.run.distributed_timeout_seconds);
    TrainRunOptions options;
    options.communicator = job.get();
    // Without either flag a folder holding a run is refused: replacing it silently lost finished runs.
    options.existing_run = args->resume      ? ExistingRun::kResume
                           : args->overwrite ? ExistingRun::kOverwrite
                                             : ExistingRun::kRefuse;
    const auto outcome = train(config, args->out_dir, options);
    if (job && !job->is_main()) return;  // rank 0 reports for the job
    std::cout << "trained " << outcome.iterations_done << " iterations in " << outcome.seconds << " s; run folder: "
              << args->out_dir << "\n";
    if (!outcome.validations.empty()) {
      const auto& last = outcome.validations.back();
      std::cout << "validation: box AP " << last.bbox_stats[0] << ", mask AP " << last.segm_stats[0] << "\n";
    }
  });
}

}  // namespace instseg::cli
