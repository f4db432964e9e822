// Validation and predict inside a job: ranks are threads of this process meeting through a file
// (dist::join_through_file), each with its own copy of the model, as processes would have. What a
// job computes and writes must be what one process computes and writes, whatever the share of
// images each rank gets (5 images on 2 and 3 ranks: uneven shares).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <chrono>
#include <cstring>
#include <exception>
#include <filesystem>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "instseg/checkpoint/state_dict.h"
#include "instseg/data/image_io.h"
#include "instseg/distributed/communicator.h"
#include "instseg/engine/model_factory.h"
#include "instseg/engine/predictor.h"
#include "instseg/engine/training_data.h"
#include "instseg/engine/validation.h"
#include "support/test_dir.h"
#include "tiny_training.h"

namespace instseg {
namespace {

namespace fs = std::filesystem;

constexpr int kImages = 5;
constexpr uint64_t kLossSeed = 42;

// The engine tests' tiny model on 64-pixel synthetic images, random weights (its detections are
// many and arbitrary, which is all a comparison needs), one thread per rank.
TrainConfig small_config() {
  TrainConfig c = testing::tiny_train_config();
  c.data.synthetic_image_size = 64;
  c.data.synthetic_train_images = 4;
  c.data.synthetic_val_images = kImages;
  c.model.options.transform.min_size = {64};
  c.model.options.transform.max_size = 64;
  return c;
}

// Every rank starts from the same weights, as a job's ranks do after the broadcast.
MaskRcnn make_model(const TrainConfig& config, int64_t num_classes) {
  torch::manual_seed(7);
  return build_mask_rcnn_for_training(config.model, num_classes);
}

// Runs body(rank, communicator) on `world` threads joined through a fresh store file; rethrows a
// rank's failure after all have ended (the others then fail within the timeout, not hang).
void run_ranks(int world, const std::string& store, const std::function<void(int, dist::Communicator&)>& body) {
  std::vector<std::exception_ptr> errors(static_cast<size_t>(world));
  std::vector<std::thread> threads;
  dist::CommunicatorOptions options;
  options.timeout = std::chrono::seconds(60);
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      try {
        const auto comm = dist::join_through_file(store, r, world, options);
        body(r, *comm);
      } catch (...) {
        errors[static_cast<size_t>(r)] = std::current_exception();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (const auto& e : errors) {
    if (e) std::rethrow_exception(e);
  }
}

bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof(double)) == 0; }

// Field for field, doubles to the bit, masks run for run.
void expect_same_detections(const std::vector<coco::Detection>& ours, const std::vector<coco::Detection>& expected) {
  ASSERT_EQ(ours.size(), expected.size());
  for (size_t k = 0; k < expected.size(); ++k) {
    SCOPED_TRACE("detection " + std::to_string(k));
    const auto &a = ours[k], &b = expected[k];
    EXPECT_EQ(a.image_id, b.image_id);
    EXPECT_EQ(a.category_id, b.category_id);
    EXPECT_TRUE(same_bits(a.score, b.score)) << a.score << " vs " << b.score;
    EXPECT_EQ(a.has_bbox, b.has_bbox);
    for (int i = 0; i < 4; ++i) EXPECT_TRUE(same_bits(a.bbox[i], b.bbox[i])) << "bbox[" << i << "]";
    ASSERT_EQ(a.mask.has_value(), b.mask.has_value());
    if (a.mask) {
      EXPECT_EQ(a.mask->h, b.mask->h);
      EXPECT_EQ(a.mask->w, b.mask->w);
      EXPECT_EQ(a.mask->counts, b.mask->counts);
    }
  }
}

class DistributedValidation : public ::testing::TestWithParam<int> {};

// Rank r validates images r, r + world, ...; the main rank's gathered results file is one
// process's byte for byte, and every rank has one process's stats and losses. The losses catch a
// rank drawing its images' proposals from a stream that depends on the share (e.g. its own image
// count) rather than on the image index.
TEST_P(DistributedValidation, EqualsOneProcess) {
  const int world = GetParam();
  torch::set_num_threads(1);
  testing::TestDir dir;
  const TrainConfig config = small_config();
  const TrainingData data(config.data);
  ASSERT_EQ(data.val_set()->size(), kImages);

  MaskRcnn single_model = make_model(config, data.num_classes());
  const auto one_process = dist::single_process();
  const DatasetValidation expected =
      validate_on_dataset(*single_model, *data.val_set(), data.val_ground_truth(), kLossSeed, *one_process);
  ASSERT_GT(expected.predictions.detections.size(), 0u) << "no detections: the comparison would be empty";
  ASSERT_FALSE(expected.losses.empty());

  std::vector<MaskRcnn> models;
  for (int r = 0; r < world; ++r) models.push_back(make_model(config, data.num_classes()));
  std::vector<DatasetValidation> got(static_cast<size_t>(world));
  run_ranks(world, dir / "store", [&](int rank, dist::Communicator& comm) {
    got[static_cast<size_t>(rank)] =
        validate_on_dataset(*models[static_cast<size_t>(rank)], *data.val_set(), data.val_ground_truth(), kLossSeed, comm);
  });

  EXPECT_EQ(got[0].predictions.results_json, expected.predictions.results_json);
  expect_same_detections(got[0].predictions.detections, expected.predictions.detections);
  for (int r = 0; r < world; ++r) {
    SCOPED_TRACE("rank " + std::to_string(r));
    const DatasetValidation& v = got[static_cast<size_t>(r)];
    if (r > 0) EXPECT_TRUE(v.predictions.results_json.empty() && v.predictions.detections.empty());
    for (size_t i = 0; i < 12; ++i) {
      EXPECT_NEAR(v.bbox_stats[i], expected.bbox_stats[i], 1e-9) << "bbox stats[" << i << "]";
      EXPECT_NEAR(v.segm_stats[i], expected.segm_stats[i], 1e-9) << "segm stats[" << i << "]";
    }
    ASSERT_EQ(v.losses.size(), expected.losses.size());
    for (const auto& [name, value] : expected.losses) {
      ASSERT_EQ(v.losses.count(name), 1u) << name;
      EXPECT_NEAR(v.losses.at(name), value, 1e-9) << name;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Ranks, DistributedValidation, ::testing::Values(2, 3),
                         [](const auto& info) { return std::to_string(info.param) + "Ranks"; });

std::map<std::string, std::string> files_in(const std::string& folder) {
  std::map<std::string, std::string> files;
  for (const auto& entry : fs::directory_iterator(folder)) {
    files[entry.path().filename().string()] = testing::read_file_bytes(entry.path().string());
  }
  return files;
}

// Two ranks, each writing into a folder of its own (as nodes without shared storage would): rank r
// draws exactly the overlays of inputs r, r + 2, ... (so each is drawn once in the job), rank 0
// writes predictions.json, one process's byte for byte; an unreadable input that falls to rank 1
// counts as a failure on both ranks.
TEST(DistributedPredict, TwoRanksWriteOneProcessFiles) {
  torch::set_num_threads(1);
  testing::TestDir dir;
  const TrainConfig config = small_config();
  const TrainingData data(config.data);
  const std::string weights = dir / "model.pth";
  save_state_dict(weights, module_state_dict(*make_model(config, data.num_classes())));
  // Sorted input order: img_0, img_0b (unreadable: input 1, rank 1's), img_1, ..., img_4.
  const fs::path images = dir / "images";
  fs::create_directories(images);
  for (int i = 0; i < kImages; ++i) {
    data::write_image_png((images / ("img_" + std::to_string(i) + ".png")).string(), data.val_set()->get(i).image);
  }
  dir.write("images/img_0b.png", "not a picture");

  auto options_for = [&](const std::string& out) {
    PredictOptions o;
    o.weights = weights;
    o.inputs = {images.string()};
    o.out_dir = out;
    o.min_size = 64;
    o.max_size = 64;
    o.threads = 1;
    o.show_thresh = 0.0;  // draw every detection: the overlays then show any difference
    o.progress = false;
    return o;
  };
  const PredictSummary expected = run_predict(options_for(dir / "one"));
  ASSERT_EQ(expected.failures.size(), 1u);
  ASSERT_EQ(expected.images_done, kImages);
  ASSERT_GT(expected.detections, 0);
  const auto one = files_in(dir / "one");
  ASSERT_EQ(one.size(), static_cast<size_t>(kImages + 1));  // 5 overlays + predictions.json

  std::vector<PredictSummary> summaries(2);
  run_ranks(2, dir / "store", [&](int rank, dist::Communicator& comm) {
    PredictOptions o = options_for(dir / ("rank" + std::to_string(rank)));
    o.communicator = &comm;
    summaries[static_cast<size_t>(rank)] = run_predict(o);
  });

  const auto rank0 = files_in(dir / "rank0"), rank1 = files_in(dir / "rank1");
  ASSERT_EQ(rank0.count("predictions.json"), 1u);
  EXPECT_EQ(rank0.at("predictions.json"), one.at("predictions.json"));
  EXPECT_EQ(rank1.count("predictions.json"), 0u);
  // Inputs 0, 2, 4 (img_0, img_1, img_3) are rank 0's; 1 (unreadable) and 3, 5 (img_2, img_4) rank 1's.
  const std::set<std::string> expected0 = {"img_0.overlay.jpg", "img_1.overlay.jpg", "img_3.overlay.jpg",
                                           "predictions.json"};
  const std::set<std::string> expected1 = {"img_2.overlay.jpg", "img_4.overlay.jpg"};
  std::set<std::string> names0, names1;
  for (const auto& [name, bytes] : rank0) names0.insert(name);
  for (const auto& [name, bytes] : rank1) names1.insert(name);
  EXPECT_EQ(names0, expected0);
  EXPECT_EQ(names1, expected1);
  for (const auto* files : {&rank0, &rank1}) {
    for (const auto& [name, bytes] : *files) {
      ASSERT_EQ(one.count(name), 1u) << name;
      EXPECT_TRUE(bytes == one.at(name)) << name << " differs from one process's";
    }
  }
  for (int r = 0; r < 2; ++r) {
    SCOPED_TRACE("rank " + std::to_string(r));
    const PredictSummary& s = summaries[static_cast<size_t>(r)];
    EXPECT_EQ(s.images_done, expected.images_done);
    EXPECT_EQ(s.detections, expected.detections);
    EXPECT_EQ(s.failures, expected.failures);
  }
}

}  // namespace
}  // namespace instseg
