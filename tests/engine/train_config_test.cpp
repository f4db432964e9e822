// TrainConfig: JSON files (nested and dotted keys), --set overrides, errors that name the key or
// field, and the config.json round trip.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "instseg/engine/train_config.h"
#include "instseg/errors.h"
#include "support/reference.h"

namespace instseg {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::ThrowsMessage;

TEST(TrainConfig, NestedAndDottedKeysBothApply) {
  TrainConfig c;
  c.apply_json(R"({"optim": {"lr": 0.005, "steps": [100, 200]},
                   "model.backbone.depth": 18,
                   "model": {"preset": "v2", "transform": {"min_size": [480, 512]}},
                   "run": {"progress": false},
                   "data": {"kind": "synthetic", "synthetic_image_size": 128}})",
               "cfg.json");
  EXPECT_DOUBLE_EQ(c.optim.lr, 0.005);
  EXPECT_EQ(c.optim.steps, (std::vector<int>{100, 200}));
  EXPECT_EQ(c.model.options.backbone.depth, 18);
  EXPECT_EQ(c.model.preset, "v2");
  EXPECT_EQ(c.model.options.transform.min_size, (std::vector<int64_t>{480, 512}));
  EXPECT_FALSE(c.run.progress);
  EXPECT_EQ(c.data.kind, "synthetic");
  EXPECT_EQ(c.data.synthetic_image_size, 128);
  // untouched keys keep their defaults
  EXPECT_EQ(c.optim.iterations, 1000);
  EXPECT_DOUBLE_EQ(c.optim.momentum, 0.9);
  EXPECT_EQ(c.model.options.transform.max_size, 1333);
}

TEST(TrainConfig, LoadTrainConfigReadsTheFileOverDefaults) {
  const auto path = std::filesystem::path(::testing::TempDir()) / "instseg_train_config_load.json";
  std::ofstream(path) << R"({"optim.iterations": 77, "data": {"seed": 5}})";
  const TrainConfig c = load_train_config(path.string());
  EXPECT_EQ(c.optim.iterations, 77);
  EXPECT_EQ(c.data.seed, 5);
  EXPECT_EQ(c.optim.batch_size, 2);
  std::filesystem::remove(path);
  EXPECT_THAT([&] { load_train_config(path.string()); },
              ThrowsMessage<ConfigError>(HasSubstr("instseg_train_config_load.json")));
}

TEST(TrainConfig, SetParsesNumbersListsBooleansAndBareStrings) {
  TrainConfig c;
  c.apply_override("optim.lr=0.01");
  c.apply_override("optim.iterations=250");
  c.apply_override("optim.steps=[150,220]");
  c.apply_override("model.transform.min_size=[640, 672, 704]");
  c.apply_override("run.progress=false");
  c.apply_override("model.preset=v2");              // bare string
  c.apply_override("model.weights=\"/tmp/a b.pth\"");  // quoted JSON string
  c.apply_override("data.train_images=/data/coco/train2017");
  c.apply_override("optim.schedule=cosine");
  EXPECT_DOUBLE_EQ(c.optim.lr, 0.01);
  EXPECT_EQ(c.optim.iterations, 250);
  EXPECT_EQ(c.optim.steps, (std::vector<int>{150, 220}));
  EXPECT_EQ(c.model.options.transform.min_size, (std::vector<int64_t>{640, 672, 704}));
  EXPECT_FALSE(c.run.progress);
  EXPECT_EQ(c.model.preset, "v2");
  EXPECT_EQ(c.model.weights, "/tmp/a b.pth");
  EXPECT_EQ(c.data.train_images, "/data/coco/train2017");
  EXPECT_EQ(c.optim.schedule, "cosine");
}

TEST(TrainConfig, SetWithoutAssignmentIsAnError) {
  TrainConfig c;
  EXPECT_THAT([&] { c.apply_override("optim.lr"); }, ThrowsMessage<ConfigError>(HasSubstr("key=value")));
  EXPECT_THAT([&] { c.apply_override("=3"); }, ThrowsMessage<ConfigError>(HasSubstr("key=value")));
}

TEST(TrainConfig, UnknownKeysAreErrorsNamingTheKey) {
  TrainConfig c;
  EXPECT_THAT([&] { c.apply_override("optim.learning_rate=0.1"); },
              ThrowsMessage<ConfigError>(HasSubstr("'optim.learning_rate'")));
  EXPECT_THAT([&] { c.apply_json(R"({"optim": {"lr": 0.01, "nesterov": true}})", "my.json"); },
              ThrowsMessage<ConfigError>(AllOf(HasSubstr("my.json"), HasSubstr("'optim.nesterov'"))));
  EXPECT_THAT([&] { c.apply_json(R"({"modle.depth": 18})", "my.json"); },
              ThrowsMessage<ConfigError>(HasSubstr("'modle.depth'")));
  EXPECT_THAT([&] { c.apply_json(R"({"depth": 18})", "my.json"); }, ThrowsMessage<ConfigError>(HasSubstr("'depth'")));
}

TEST(TrainConfig, WrongTypesAreErrorsNamingTheKey) {
  TrainConfig c;
  EXPECT_THAT([&] { c.apply_override("model.backbone.depth=deep"); },
              ThrowsMessage<ConfigError>(AllOf(HasSubstr("model.backbone.depth"), HasSubstr("deep"))));
  // An old name is named as written, with its new name.
  EXPECT_THAT([&] { c.apply_override("model.depth=deep"); },
              ThrowsMessage<ConfigError>(AllOf(HasSubstr("'model.depth' (now 'model.backbone.depth')"), HasSubstr("deep"))));
  EXPECT_THAT([&] { c.apply_override("optim.steps=100"); }, ThrowsMessage<ConfigError>(HasSubstr("optim.steps")));
  EXPECT_THAT([&] { c.apply_override("optim.lr=[0.1]"); }, ThrowsMessage<ConfigError>(HasSubstr("optim.lr")));
  EXPECT_THAT([&] { c.apply_json(R"({"model": {"transform": {"min_size": ["800"]}}})", "my.json"); },
              ThrowsMessage<ConfigError>(AllOf(HasSubstr("my.json"), HasSubstr("model.transform.min_size"))));
  EXPECT_THAT([&] { c.apply_json(R"({"model": {"roi_heads": {"bbox_reg_weights": [10, 10, 5]}}})", "my.json"); },
              ThrowsMessage<ConfigError>(HasSubstr("model.roi_heads.bbox_reg_weights")));
  // Enumerations take their vocabulary; the error names the key and the accepted words.
  EXPECT_THAT([&] { c.apply_override("model.backbone.norm=frozen"); },
              ThrowsMessage<ConfigError>(AllOf(HasSubstr("model.backbone.norm"), HasSubstr("frozen_batch_norm"))));
  EXPECT_THAT([&] { c.apply_override("model.roi_heads.box_head=mlp"); },
              ThrowsMessage<ConfigError>(AllOf(HasSubstr("model.roi_heads.box_head"), HasSubstr("conv_fc"))));
  EXPECT_THAT([&] { c.apply_override("model.mask_paste=exact"); },
              ThrowsMessage<ConfigError>(HasSubstr("model.mask_paste")));
  EXPECT_THAT([&] { c.apply_override("model.norm=layer"); },
              ThrowsMessage<ConfigError>(AllOf(HasSubstr("model.backbone.norm"), HasSubstr("'model.norm'"))));
  EXPECT_THAT([&] { c.apply_json(R"({"data": {"kind": 3}})", "my.json"); },
              ThrowsMessage<ConfigError>(HasSubstr("data.kind")));
}

// An integer key given a fraction or a boolean is a wrong type too; silently truncating 18.5 to
// 18 (or reading true as 1) would train another model than the one asked for.
TEST(TrainConfig, FractionsAndBooleansForIntegerKeysAreErrors) {
  TrainConfig c;
  EXPECT_THAT([&] { c.apply_override("optim.iterations=1000.5"); },
              ThrowsMessage<ConfigError>(HasSubstr("optim.iterations")));
  EXPECT_THAT([&] { c.apply_override("model.backbone.depth=true"); },
              ThrowsMessage<ConfigError>(HasSubstr("model.backbone.depth")));
}

TEST(TrainConfig, InvalidJsonNamesTheSource) {
  TrainConfig c;
  EXPECT_THAT([&] { c.apply_json("{\"optim\": {\"lr\": 0.1,}}", "broken.json"); },
              ThrowsMessage<ConfigError>(HasSubstr("broken.json")));
  EXPECT_THAT([&] { c.apply_json("[1, 2]", "list.json"); }, ThrowsMessage<ConfigError>(HasSubstr("list.json")));
}

TrainConfig valid_synthetic() {
  TrainConfig c;
  c.data.kind = "synthetic";
  return c;
}

TEST(TrainConfig, DefaultsValidateForSyntheticData) {
  EXPECT_NO_THROW(valid_synthetic().validate());
  // the default kind is coco, which needs its files
  EXPECT_THAT([] { TrainConfig{}.validate(); }, ThrowsMessage<ConfigError>(HasSubstr("data.train_annotations")));
}

TEST(TrainConfig, ValidateNamesTheField) {
  struct Case {
    std::string assignment, field;
  };
  const std::vector<Case> cases = {
      {"model.backbone.depth=7", "model.backbone.depth"},
      {"model.backbone.trainable_layers=6", "model.backbone.trainable_layers"},
      {"model.backbone.out_channels=0", "model.backbone.out_channels"},
      {"model.transform.min_size=[]", "model.transform.min_size"},
      {"model.transform.min_size=[2000]", "model.transform.min_size"},
      {"model.transform.image_std=[0.2,0,0.2]", "model.transform.image_std"},
      {"model.anchors.sizes=[[32],[64]]", "model.anchors.sizes"},
      {"model.rpn.nms_thresh=1.5", "model.rpn.nms_thresh"},
      {"model.rpn.post_nms_top_n_test=0", "model.rpn.post_nms_top_n_test"},
      {"model.roi_heads.batch_size_per_image=0", "model.roi_heads.batch_size_per_image"},
      {"model.roi_heads.detections_per_img=0", "model.roi_heads.detections_per_img"},
      {"model.roi_heads.representation_size=0", "model.roi_heads.representation_size"},
      {"model.num_classes=1", "model.num_classes"},
      {"model.depth=7", "model.backbone.depth"},  // an old name: validated as its new key
      {"optim.iterations=0", "optim.iterations"},
      {"optim.batch_size=0", "optim.batch_size"},
      {"optim.accumulate=0", "optim.accumulate"},
      {"optim.accumulate=-2", "optim.accumulate"},
      {"optim.lr=-0.1", "optim.lr"},
      {"optim.momentum=1", "optim.momentum"},
      {"optim.optimizer=adam", "optim.optimizer"},
      {"optim.beta1=1", "optim.beta1"},
      {"optim.beta2=-0.5", "optim.beta2"},
      {"optim.weight_decay=-1", "optim.weight_decay"},
      {"optim.warmup_factor=0", "optim.warmup_factor"},
      {"optim.warmup_factor=1.5", "optim.warmup_factor"},
      {"optim.schedule=poly", "optim.schedule"},
      {"optim.precision=fp16", "optim.precision"},
      {"optim.gamma=0", "optim.gamma"},
      {"optim.clip_grad_norm=-1", "optim.clip_grad_norm"},
      {"run.log_every=0", "run.log_every"},
      {"run.checkpoint_every=0", "run.checkpoint_every"},
      {"run.threads=-2", "run.threads"},
      {"run.stop_after=-1", "run.stop_after"},
      {"run.distributed_timeout_seconds=0", "run.distributed_timeout_seconds"},
      {"data.kind=imagenet", "data.kind"},
      {"data.synthetic_image_size=32", "data.synthetic_image_size"},
      {"data.max_image_pixels=0", "data.max_image_pixels"},
      {"data.synthetic_min_visible_fraction=1.5", "data.synthetic_min_visible_fraction"},
      {"data.synthetic_val_min_objects=-2", "data.synthetic_val_min_objects"},
      {"data.synthetic_val_min_objects=9", "data.synthetic_val_max_objects"},  // above the training max 6
  };
  for (const auto& test : cases) {
    TrainConfig c = valid_synthetic();
    c.apply_override(test.assignment);  // types are right: only validate() may object
    EXPECT_THAT([&] { c.validate(); }, ThrowsMessage<ConfigError>(HasSubstr(test.field))) << test.assignment;
  }
  TrainConfig folder;
  folder.data.kind = "folder";
  EXPECT_THAT([&] { folder.validate(); }, ThrowsMessage<ConfigError>(HasSubstr("data.train_images")));
}

// Every key of a nested JSON object, dotted ("model.rpn.nms_thresh").
void collect_keys(const nlohmann::json& object, const std::string& prefix, std::vector<std::pair<std::string, nlohmann::json>>& out) {
  for (const auto& [name, value] : object.items()) {
    const std::string key = prefix.empty() ? name : prefix + "." + name;
    if (value.is_object()) {
      collect_keys(value, key, out);
    } else {
      out.emplace_back(key, value);
    }
  }
}

TEST(TrainConfig, ToJsonRoundTripsEveryKey) {
  TrainConfig c = valid_synthetic();
  c.apply_override("optim.steps=[10,20]");
  c.apply_override("model.transform.min_size=[128,160]");
  c.apply_override("model.preset=v2");
  c.apply_override("optim.lr=0.0125");
  c.apply_override("optim.warmup_factor=0.333333333333333");
  c.apply_override("run.progress=false");
  c.apply_override("run.stop_after=7");
  c.apply_override("model.backbone.out_channels=64");
  c.apply_override("model.backbone.returned_layers=[2,3,4]");
  c.apply_override("model.anchors.aspect_ratios=[[0.5,1],[0.5,1],[0.5,1],[0.25,4]]");
  c.apply_override("model.anchors.sizes=[[32],[64],[128],[256]]");
  c.apply_override("data.horizontal_flip=false");
  c.apply_override("optim.accumulate=4");
  c.apply_override("run.distributed_timeout_seconds=30");
  c.apply_override("optim.memory_format=channels_last");
  const std::string text = c.to_json();
  const auto parsed = nlohmann::json::parse(text);
  ASSERT_TRUE(parsed.is_object());
  for (const char* section : {"data", "model", "optim", "run"}) EXPECT_TRUE(parsed.contains(section)) << section;
  EXPECT_EQ(parsed["model"]["preset"], "v2");
  EXPECT_EQ(parsed["model"]["roi_heads"]["box_head"], "conv_fc");  // the preset's value, written out
  EXPECT_EQ(parsed["model"]["backbone"]["fpn_norm"], "batch_norm");
  EXPECT_EQ(parsed["optim"]["steps"], nlohmann::json::array({10, 20}));
  EXPECT_EQ(parsed["run"]["stop_after"], 7);
  EXPECT_EQ(parsed["optim"]["accumulate"], 4);
  EXPECT_EQ(parsed["run"]["distributed_timeout_seconds"], 30);
  EXPECT_EQ(parsed["model"]["backbone"]["out_channels"], 64);

  TrainConfig back;
  back.apply_json(text, "config.json");
  EXPECT_EQ(back.to_json(), text);
  EXPECT_EQ(back.data.kind, "synthetic");
  EXPECT_EQ(back.model.options.transform.min_size, (std::vector<int64_t>{128, 160}));
  EXPECT_EQ(back.model.options.anchors.aspect_ratios[3], (std::vector<double>{0.25, 4}));
  EXPECT_EQ(back.model.options.backbone.returned_layers, (std::vector<int>{2, 3, 4}));
  EXPECT_EQ(back.model.options.roi_heads.box_head, BoxHeadKind::kConvFc);
  EXPECT_DOUBLE_EQ(back.optim.lr, 0.0125);
  EXPECT_EQ(back.optim.warmup_factor, c.optim.warmup_factor);  // doubles survive exactly
  EXPECT_FALSE(back.data.horizontal_flip);
  EXPECT_FALSE(back.run.progress);
  EXPECT_EQ(back.optim.accumulate, 4);
  EXPECT_EQ(back.run.distributed_timeout_seconds, 30);
  EXPECT_EQ(back.optim.memory_format, "channels_last");
  EXPECT_NO_THROW(back.validate());

  // every key of to_json() is accepted back one at a time as a dotted --set
  std::vector<std::pair<std::string, nlohmann::json>> keys;
  collect_keys(parsed, "", keys);
  for (const auto& [key, value] : keys) {
    TrainConfig d;
    EXPECT_NO_THROW(d.apply_override(key + "=" + value.dump())) << key;
  }
  // DataConfig 18 + model.preset, model.weights + MaskRcnnOptions 39 + OptimConfig 17 + RunConfig 9
  EXPECT_EQ(keys.size(), 85u);
}

// The model section is MaskRcnnOptions: a preset, then every key set, in whatever order they come.
TEST(TrainConfig, APresetNeverOverridesAKeyTheConfigSets) {
  TrainConfig file_order;
  file_order.apply_json(R"({"model": {"roi_heads": {"head_norm": "group_norm"}, "preset": "v2"}})", "a.json");
  EXPECT_EQ(file_order.model.options.roi_heads.head_norm, NormKind::kGroupNorm);  // set, kept
  EXPECT_EQ(file_order.model.options.roi_heads.box_head, BoxHeadKind::kConvFc);   // from the preset
  EXPECT_EQ(file_order.model.options.rpn.conv_depth, 2);

  TrainConfig set_after;
  set_after.apply_json(R"({"model": {"backbone": {"fpn_norm": "none"}, "rpn": {"conv_depth": 3}}})", "b.json");
  set_after.apply_override("model.preset=v2");
  EXPECT_EQ(set_after.model.options.backbone.fpn_norm, NormKind::kNone);
  EXPECT_EQ(set_after.model.options.rpn.conv_depth, 3);
  EXPECT_EQ(set_after.model.options.roi_heads.head_norm, NormKind::kBatchNorm);
  set_after.apply_override("model.preset=v1");  // back to v1: the set keys still hold
  EXPECT_EQ(set_after.model.options.rpn.conv_depth, 3);
  EXPECT_EQ(set_after.model.options.roi_heads.head_norm, NormKind::kNone);

  // Unset, the model is exactly the preset.
  TrainConfig plain;
  plain.apply_override("model.preset=v2");
  const MaskRcnnOptions v2 = MaskRcnnOptions::v2();
  TrainConfig expected;
  expected.model.options = v2;
  expected.model.preset = "v2";
  EXPECT_EQ(plain.to_json(), expected.to_json());
  EXPECT_THAT([&] { plain.apply_override("model.preset=v3"); }, ThrowsMessage<ConfigError>(HasSubstr("model.preset")));
}

// Configs written before the model section mirrored MaskRcnnOptions keep working, key for key.
TEST(TrainConfig, OldModelKeysAreReadAsTheirNewKeys) {
  TrainConfig old_names, new_names;
  old_names.apply_json(R"({"model": {"variant": "v2", "depth": 18, "norm": "group", "trainable_layers": 5,
                          "min_sizes": [320, 352], "max_size": 600, "rpn_post_nms_top_n_train": 300,
                          "rpn_post_nms_top_n_test": 200, "box_batch_size_per_image": 64,
                          "detections_per_image": 30, "fpn_channels": 64, "box_representation_size": 256,
                          "mask_head_channels": 32, "mask_paste": "aligned", "weights": "w.pth"}})",
                       "old.json");
  new_names.apply_json(R"({"model": {"preset": "v2", "backbone": {"depth": 18, "norm": "group_norm",
                          "trainable_layers": 5, "out_channels": 64}, "transform": {"min_size": [320, 352],
                          "max_size": 600}, "rpn": {"post_nms_top_n_train": 300, "post_nms_top_n_test": 200},
                          "roi_heads": {"batch_size_per_image": 64, "detections_per_img": 30,
                          "representation_size": 256, "mask_channels": 32}, "mask_paste": "aligned",
                          "weights": "w.pth"}})",
                       "new.json");
  EXPECT_EQ(old_names.to_json(), new_names.to_json());
  EXPECT_EQ(old_names.model.options.backbone.norm, NormKind::kGroupNorm);
  TrainConfig frozen, batch;
  frozen.apply_override("model.norm=frozen");
  batch.apply_override("model.norm=batch");
  EXPECT_EQ(frozen.model.options.backbone.norm, NormKind::kFrozenBatchNorm);
  EXPECT_EQ(batch.model.options.backbone.norm, NormKind::kBatchNorm);
}

TEST(TrainConfig, FilesMayCarryComments) {
  TrainConfig c;
  c.apply_json("// why these numbers\n{\n  \"optim\": {\"lr\": 0.5}  // a reason\n}\n", "c.json");
  EXPECT_DOUBLE_EQ(c.optim.lr, 0.5);
}

TEST(TrainConfig, PrecisionAndMemoryFormatTakeTheirWordsOnly) {
  TrainConfig c;
  c.data.kind = "synthetic";
  EXPECT_EQ(c.optim.precision, "fp32");
  EXPECT_EQ(c.optim.memory_format, "contiguous");  // nothing timed by default
  c.apply_override("optim.memory_format=auto");
  EXPECT_EQ(c.optim.memory_format, "auto");
  EXPECT_NO_THROW(c.validate());
  c.apply_override("optim.memory_format=nhwc");
  EXPECT_THAT([&] { c.validate(); },
              ThrowsMessage<ConfigError>(AllOf(HasSubstr("optim.memory_format"), HasSubstr("'nhwc'"))));
  c.optim.memory_format = "channels_last";
  c.optim.precision = "fp16";
  EXPECT_THAT([&] { c.validate(); }, ThrowsMessage<ConfigError>(AllOf(HasSubstr("optim.precision"), HasSubstr("'fp16'"))));
}

// The configs shipped in configs/ load and validate (paths they name need not exist here).
TEST(TrainConfig, ShippedConfigsLoadAndValidate) {
  for (const char* name : {"demo.json", "finetune_coco.json", "overfit_tiny_coco.json", "synthetic_scratch.json"}) {
    TrainConfig c = load_train_config(testing::source_path(std::string("configs/") + name));
    // bench/overfit_tiny_coco.sh gives its annotation files with --set.
    if (c.data.kind == "coco" && c.data.train_annotations.empty()) c.apply_override("data.train_annotations=a.json");
    EXPECT_NO_THROW(c.validate()) << name;
  }
}

}  // namespace
}  // namespace instseg
