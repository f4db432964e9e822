// A model trained here loads in torchvision (load_state_dict strict=True, tests/reference/interop.py)
// and detects the same objects there as here on synthetic validation images.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdlib>
#include <filesystem>

#include "instseg/checkpoint/load.h"
#include "instseg/checkpoint/state_dict.h"
#include "instseg/data/image_io.h"
#include "instseg/engine/model_factory.h"
#include "instseg/engine/trainer.h"
#include "instseg/engine/training_data.h"
#include "support/reference.h"
#include "tiny_training.h"

namespace instseg {
namespace {

namespace fs = std::filesystem;

double box_iou(const torch::Tensor& a, const torch::Tensor& b) {  // two [4] xyxy boxes
  const double ix1 = std::max(a[0].item<double>(), b[0].item<double>());
  const double iy1 = std::max(a[1].item<double>(), b[1].item<double>());
  const double ix2 = std::min(a[2].item<double>(), b[2].item<double>());
  const double iy2 = std::min(a[3].item<double>(), b[3].item<double>());
  const double inter = std::max(0.0, ix2 - ix1) * std::max(0.0, iy2 - iy1);
  auto area = [](const torch::Tensor& t) {
    return (t[2].item<double>() - t[0].item<double>()) * (t[3].item<double>() - t[1].item<double>());
  };
  const double uni = area(a) + area(b) - inter;
  return uni > 0 ? inter / uni : (inter == 0 ? 1.0 : 0.0);
}

TEST(Interop, TrainedModelLoadsStrictlyInTorchvisionAndDetectsTheSame) {
  testing::TestDir dir;
  const TrainConfig config = testing::tiny_train_config();
  train(config, dir / "run", false);
  const std::string weights = dir / "run/model_last.pth";

  // The model as trained (same RPN/RoI settings as interop.py builds in torchvision).
  const TrainingData data(config.data);
  MaskRcnn model = build_mask_rcnn_for_training(config.model, data.num_classes());
  ASSERT_EQ(data.num_classes(), 5);
  load_state_dict(*model, read_state_dict(weights), weights);
  model->eval();
  // predict's loader recognises the narrow widths from the tensor shapes alone.
  const MaskRcnnOptions recognised = load_mask_rcnn(weights)->options();
  EXPECT_EQ(recognised.backbone.out_channels, config.model.options.backbone.out_channels);
  EXPECT_EQ(recognised.roi_heads.representation_size, config.model.options.roi_heads.representation_size);
  EXPECT_EQ(recognised.roi_heads.mask_channels, config.model.options.roi_heads.mask_channels);

  constexpr int kImages = 3;
  std::string command = INSTSEG_PYTHON " '" + testing::source_path("tests/reference/interop.py") + "' '" + weights + "'";
  std::vector<Detections> ours;
  {
    torch::NoGradGuard no_grad;
    for (int i = 0; i < kImages; ++i) {
      const std::string png = dir / ("val_" + std::to_string(i) + ".png");
      data::write_image_png(png, data.val_set()->get(i).image);
      ours.push_back(model->predict({data::read_image_rgb(png)})[0]);  // the pixels Python reads
      command += " '" + png + "'";
    }
  }
  const std::string out = dir / "torchvision.pt";
  command += " '" + out + "'";
  ASSERT_EQ(std::system(command.c_str()), 0) << "torchvision could not load or run the checkpoint: " << command;
  const auto theirs = testing::load_tensors(out);

  int64_t total = 0;
  for (int i = 0; i < kImages; ++i) {
    SCOPED_TRACE("image " + std::to_string(i));
    const auto& a = ours[static_cast<size_t>(i)];
    const auto boxes = theirs.at("boxes_" + std::to_string(i)), scores = theirs.at("scores_" + std::to_string(i));
    const auto labels = theirs.at("labels_" + std::to_string(i)), masks = theirs.at("masks_" + std::to_string(i));
    ASSERT_EQ(a.scores.size(0), scores.size(0)) << "detection counts differ";
    total += scores.size(0);
    // Scores are sorted in both; near-equal scores may swap, so match each of ours to an unused
    // torchvision detection with the same label, IoU >= 0.99 and score within 1e-3.
    std::vector<bool> used(static_cast<size_t>(scores.size(0)), false);
    for (int64_t k = 0; k < a.scores.size(0); ++k) {
      int64_t match = -1;
      for (int64_t j = 0; j < scores.size(0) && match < 0; ++j) {
        if (used[static_cast<size_t>(j)] || labels[j].item<int64_t>() != a.labels[k].item<int64_t>()) continue;
        if (std::abs(scores[j].item<double>() - a.scores[k].item<double>()) > 1e-3) continue;
        if (box_iou(boxes[j], a.boxes[k]) < 0.99) continue;
        match = j;
      }
      ASSERT_GE(match, 0) << "detection " << k << " (label " << a.labels[k].item<int64_t>() << ", score "
                          << a.scores[k].item<double>() << ") has no counterpart in torchvision";
      used[static_cast<size_t>(match)] = true;
      const auto m1 = a.masks[k][0] > 0.5, m2 = masks[match][0] > 0.5;
      const double inter = (m1 & m2).sum().item<double>(), uni = (m1 | m2).sum().item<double>();
      if (uni > 0) EXPECT_GE(inter / uni, 0.98) << "mask of detection " << k;
    }
  }
  EXPECT_GT(total, 0) << "no detections to compare: the check would be empty";
}

}  // namespace
}  // namespace instseg
