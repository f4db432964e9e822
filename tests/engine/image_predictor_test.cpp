// ImagePredictor, the step the server, video frames and the embedding API run per picture: one
// picture gives byte for byte the results `predict` writes for its file, and a batch of pictures of
// one size gives each picture's own results.
#include "instseg/engine/image_predictor.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "instseg/coco/results_writer.h"
#include "instseg/data/image_io.h"
#include "instseg/engine/model_factory.h"
#include "instseg/engine/predictor.h"
#include "support/reference.h"
#include "support/test_dir.h"

namespace instseg {
namespace {

// r18.pth (tests/reference/interop_cli.py): a ResNet-18-FPN Mask R-CNN in torchvision's layout,
// random heads, so every image gets many low-scoring detections with masks: plenty to compare.
std::string weights() { return testing::reference_dir("interop_cli") + "/r18.pth"; }
std::string image_path(const std::string& file) { return testing::source_path("datasets/tiny_coco/val2017/" + file); }

ModelOverrides small() {
  ModelOverrides o;
  o.min_size = 224;
  o.max_size = 320;
  return o;
}

TEST(ImagePredictor, OnePictureGivesTheResultsPredictWritesForItsFile) {
  testing::TestDir dir;
  const std::vector<std::string> files = {"000000006818.jpg", "000000017627.jpg"};
  PredictOptions options;
  options.weights = weights();
  options.out_dir = dir / "predict";
  options.min_size = 224;
  options.max_size = 320;
  options.overlays = false;
  options.progress = false;
  options.threads = 2;
  for (const auto& f : files) options.inputs.push_back(image_path(f));
  run_predict(options);

  ImagePredictor predictor(load_model(weights(), small()));
  coco::ResultsWriter ours;
  size_t detections = 0;
  for (size_t i = 0; i < files.size(); ++i) {
    // predict numbers its images 1, 2, ... without --coco-gt.
    const ImagePrediction p = predictor.predict(data::read_image_rgb(image_path(files[i])), int64_t(i) + 1);
    ASSERT_EQ(p.masks->size(), p.detections.boxes.size(0));
    ours.add(p.results, files[i]);
    detections += p.results.size();
  }
  EXPECT_GT(detections, 20u);  // the comparison below covers many boxes, scores and masks
  EXPECT_EQ(ours.dump(), testing::read_file_bytes(dir / "predict/predictions.json"));
  // A bare torchvision model's labels are COCO's category ids.
  EXPECT_EQ(predictor.category_id_of(18), 18);
  EXPECT_EQ(predictor.class_names().at(1), "person");
}

TEST(ImagePredictor, ABatchOfOneSizeGivesEachPicturesOwnResults) {
  ImagePredictor predictor(load_model(weights(), small()));
  const torch::Tensor a = data::read_image_rgb(image_path("000000006818.jpg"));
  const torch::Tensor b = a.flip({2}).contiguous();  // the same size, other content
  const std::vector<ImagePrediction> batch = predictor.predict({a, b}, {7, 8});
  ASSERT_EQ(batch.size(), 2u);
  const ImagePrediction alone[] = {predictor.predict(a, 7), predictor.predict(b, 8)};
  for (int i = 0; i < 2; ++i) {
    SCOPED_TRACE(i);
    const auto& x = batch[i].results;
    const auto& y = alone[i].results;
    ASSERT_EQ(x.size(), y.size());
    ASSERT_GT(x.size(), 10u);
    for (size_t k = 0; k < x.size(); ++k) {
      EXPECT_EQ(x[k].image_id, 7 + i);
      EXPECT_EQ(x[k].category_id, y[k].category_id);
      // Batched kernels may round differently in the last bits; anything larger is a batching bug
      // (a picture seeing its neighbour's pixels or proposals).
      EXPECT_NEAR(x[k].score, y[k].score, 1e-4);
      for (int c = 0; c < 4; ++c) EXPECT_NEAR(x[k].bbox[c], y[k].bbox[c], 1e-2);
      ASSERT_TRUE(x[k].mask && y[k].mask);
      EXPECT_EQ(x[k].mask->h, y[k].mask->h);
      EXPECT_EQ(x[k].mask->w, y[k].mask->w);
    }
  }
  EXPECT_THROW(predictor.predict({a, b}, {1}), std::invalid_argument);
  EXPECT_TRUE(predictor.predict(std::vector<torch::Tensor>{}, {}).empty());
}

}  // namespace
}  // namespace instseg
