// TrainConfig: JSON files (nested and dotted keys), --set overrides, errors that name the key or
// field, and the config.json round trip.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "instseg/engine/train_config.h"
#include "instseg/errors.h"

namespace instseg {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::ThrowsMessage;

TEST(TrainConfig, NestedAndDottedKeysBothApply) {
  TrainConfig c;
  c.apply_json(R"({"optim": {"lr": 0.005, "steps": [100, 200]},
                   "model.depth": 18,
                   "model": {"variant": "v2", "min_sizes": [480, 512]},
                   "run": {"progress": false},
                   "data": {"kind": "synthetic", "synthetic_image_size": 128}})",
               "cfg.json");
  EXPECT_DOUBLE_EQ(c.optim.lr, 0.005);
  EXPECT_EQ(c.optim.steps, (std::vector<int>{100, 200}));
  EXPECT_EQ(c.model.depth, 18);
  EXPECT_EQ(c.model.variant, "v2");
  EXPECT_EQ(c.model.min_sizes, (std::vector<int>{480, 512}));
  EXPECT_FALSE(c.run.progress);
  EXPECT_EQ(c.data.kind, "synthetic");
  EXPECT_EQ(c.data.synthetic_image_size, 128);
  // untouched keys keep their defaults
  EXPECT_EQ(c.optim.iterations, 1000);
  EXPECT_DOUBLE_EQ(c.optim.momentum, 0.9);
  EXPECT_EQ(c.model.max_size, 1333);
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
  c.apply_override("model.min_sizes=[640, 672, 704]");
  c.apply_override("run.progress=false");
  c.apply_override("model.variant=v2");             // bare string
  c.apply_override("model.weights=\"/tmp/a b.pth\"");  // quoted JSON string
  c.apply_override("data.train_images=/data/coco/train2017");
  c.apply_override("optim.schedule=cosine");
  EXPECT_DOUBLE_EQ(c.optim.lr, 0.01);
  EXPECT_EQ(c.optim.iterations, 250);
  EXPECT_EQ(c.optim.steps, (std::vector<int>{150, 220}));
  EXPECT_EQ(c.model.min_sizes, (std::vector<int>{640, 672, 704}));
  EXPECT_FALSE(c.run.progress);
  EXPECT_EQ(c.model.variant, "v2");
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
  EXPECT_THAT([&] { c.apply_override("model.depth=deep"); },
              ThrowsMessage<ConfigError>(AllOf(HasSubstr("model.depth"), HasSubstr("deep"))));
  EXPECT_THAT([&] { c.apply_override("optim.steps=100"); }, ThrowsMessage<ConfigError>(HasSubstr("optim.steps")));
  EXPECT_THAT([&] { c.apply_override("optim.lr=[0.1]"); }, ThrowsMessage<ConfigError>(HasSubstr("optim.lr")));
  EXPECT_THAT([&] { c.apply_json(R"({"model": {"min_sizes": ["800"]}})", "my.json"); },
              ThrowsMessage<ConfigError>(AllOf(HasSubstr("my.json"), HasSubstr("model.min_sizes"))));
  EXPECT_THAT([&] { c.apply_json(R"({"data": {"kind": 3}})", "my.json"); },
              ThrowsMessage<ConfigError>(HasSubstr("data.kind")));
}

// An integer key given a fraction or a boolean is a wrong type too; silently truncating 18.5 to
// 18 (or reading true as 1) would train another model than the one asked for.
TEST(TrainConfig, FractionsAndBooleansForIntegerKeysAreErrors) {
  TrainConfig c;
  EXPECT_THAT([&] { c.apply_override("optim.iterations=1000.5"); },
              ThrowsMessage<ConfigError>(HasSubstr("optim.iterations")));
  EXPECT_THAT([&] { c.apply_override("model.depth=true"); }, ThrowsMessage<ConfigError>(HasSubstr("model.depth")));
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
      {"model.depth=7", "model.depth"},
      {"model.variant=v3", "model.variant"},
      {"model.norm=layer", "model.norm"},
      {"model.mask_paste=exact", "model.mask_paste"},
      {"model.trainable_layers=6", "model.trainable_layers"},
      {"model.min_sizes=[]", "model.min_sizes"},
      {"model.min_sizes=[2000]", "model.min_sizes"},
      {"model.box_batch_size_per_image=0", "model.box_batch_size_per_image"},
      {"optim.iterations=0", "optim.iterations"},
      {"optim.batch_size=0", "optim.batch_size"},
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

TEST(TrainConfig, ToJsonRoundTripsEveryKey) {
  TrainConfig c = valid_synthetic();
  c.apply_override("optim.steps=[10,20]");
  c.apply_override("model.min_sizes=[128,160]");
  c.apply_override("model.variant=v2");
  c.apply_override("optim.lr=0.0125");
  c.apply_override("optim.warmup_factor=0.333333333333333");
  c.apply_override("run.progress=false");
  c.apply_override("run.stop_after=7");
  c.apply_override("model.fpn_channels=64");
  c.apply_override("data.horizontal_flip=false");
  const std::string text = c.to_json();
  const auto parsed = nlohmann::json::parse(text);
  ASSERT_TRUE(parsed.is_object());
  for (const char* section : {"data", "model", "optim", "run"}) EXPECT_TRUE(parsed.contains(section)) << section;
  EXPECT_EQ(parsed["model"]["variant"], "v2");
  EXPECT_EQ(parsed["optim"]["steps"], nlohmann::json::array({10, 20}));
  EXPECT_EQ(parsed["run"]["stop_after"], 7);
  EXPECT_EQ(parsed["model"]["fpn_channels"], 64);

  TrainConfig back;
  back.apply_json(text, "config.json");
  EXPECT_EQ(back.to_json(), text);
  EXPECT_EQ(back.data.kind, "synthetic");
  EXPECT_EQ(back.model.min_sizes, (std::vector<int>{128, 160}));
  EXPECT_DOUBLE_EQ(back.optim.lr, 0.0125);
  EXPECT_EQ(back.optim.warmup_factor, c.optim.warmup_factor);  // doubles survive exactly
  EXPECT_FALSE(back.data.horizontal_flip);
  EXPECT_FALSE(back.run.progress);
  EXPECT_NO_THROW(back.validate());

  // every key of to_json() is accepted back one at a time as a dotted --set
  size_t keys = 0;
  for (const auto& [section, values] : parsed.items()) {
    for (const auto& [name, value] : values.items()) {
      TrainConfig d;
      EXPECT_NO_THROW(d.apply_override(section + "." + name + "=" + value.dump())) << section << "." << name;
      ++keys;
    }
  }
  EXPECT_EQ(keys, 56u);  // DataConfig 18 + ModelConfig 15 + OptimConfig 15 + RunConfig 8
}

}  // namespace
}  // namespace instseg
