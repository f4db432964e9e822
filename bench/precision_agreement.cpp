// What bf16 (and, with --unfused, the modules' code) does to predict's outputs, against the fused
// fp32 path on the same weights, images and threads, measured in one run (docs/precision.md).
//
// For each precision P against fp32: the share of fp32 detections matched by one of P's (same
// label, box IoU >= 0.9, fp32 detections taken in score order, each matched to the unmatched P
// detection of the highest IoU), the mean mask IoU of the matched pairs (masks pasted by the
// model's MaskPaster and binarised at 0.5), the largest |score difference| of a matched pair, the
// median seconds per image (predict_box_masks + mask_paster, as inference_on_dataset times it)
// and its speed-up over fp32. The images of each precision run interleaved, one image at a time,
// so that the machine's drift affects them alike.
//
// usage: precision_agreement --weights W [--images N] [--threads T] [--unfused]
//        precision_agreement --weights RUN_DIR --val-split [--unfused]
//   W: a checkpoint or a run folder (load_model). Images: tiny_coco val by default; with
//   --val-split the run's own validation split (its config.json's data section), and then also
//   box and mask AP (0.50:0.95) of each precision against that split's ground truth.
#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "bench_support.h"
#include "instseg/common/blas_threads.h"
#include "instseg/common/process_memory.h"
#include "instseg/data/image_io.h"
#include "instseg/engine/coco_results.h"
#include "instseg/engine/model_factory.h"
#include "instseg/engine/predictor.h"
#include "instseg/engine/train_config.h"
#include "instseg/engine/training_data.h"
#include "instseg/evaluation/coco_evaluator.h"
#include "instseg/ops/box_ops.h"

namespace fs = std::filesystem;
using instseg::bench::median;

namespace {

// The CPU's model name and whether it has the instructions bf16 needs to pay.
std::string cpu_description() {
  std::ifstream in("/proc/cpuinfo");
  std::string line, model = "unknown CPU", flags;
  while (std::getline(in, line)) {
    if (model == "unknown CPU" && line.rfind("model name", 0) == 0) model = line.substr(line.find(':') + 2);
    if (flags.empty() && line.rfind("flags", 0) == 0) flags = " " + line.substr(line.find(':') + 1) + " ";
  }
  std::string out = model + "; avx512_bf16: ";
  out += flags.find(" avx512_bf16 ") != std::string::npos ? "yes" : "no";
  out += ", amx_bf16: ";
  out += flags.find(" amx_bf16 ") != std::string::npos ? "yes" : "no";
  return out;
}

// One image's detections with their masks pasted and binarised at 0.5, each kept as its box-sized
// region (a whole-image mask per detection would cost 100x the image for 100 detections).
struct BinaryMask {
  int64_t x = 0, y = 0;
  torch::Tensor on;  // [rows, cols] bool
  int64_t count = 0;
};

struct ImageOutputs {
  instseg::Detections detections;  // boxes, scores, labels (masks per box)
  std::vector<BinaryMask> masks;
};

double mask_iou(const BinaryMask& a, const BinaryMask& b) {
  const int64_t uni_base = a.count + b.count;
  if (uni_base == 0) return 1.0;  // both empty: the same (empty) mask
  const int64_t x1 = std::max(a.x, b.x), y1 = std::max(a.y, b.y);
  const int64_t x2 = std::min(a.x + a.on.size(1), b.x + b.on.size(1));
  const int64_t y2 = std::min(a.y + a.on.size(0), b.y + b.on.size(0));
  int64_t inter = 0;
  if (x2 > x1 && y2 > y1) {
    const auto pa = a.on.slice(0, y1 - a.y, y2 - a.y).slice(1, x1 - a.x, x2 - a.x);
    const auto pb = b.on.slice(0, y1 - b.y, y2 - b.y).slice(1, x1 - b.x, x2 - b.x);
    inter = torch::logical_and(pa, pb).sum().item<int64_t>();
  }
  return static_cast<double>(inter) / static_cast<double>(uni_base - inter);
}

struct Agreement {
  int64_t reference = 0;  // fp32 detections
  int64_t other = 0;      // this precision's detections
  int64_t matched = 0;
  int64_t confident = 0, confident_matched = 0;  // fp32 detections scoring >= 0.5
  double mask_iou_sum = 0;
  double max_score_diff = 0;
  std::vector<double> seconds;
  std::vector<instseg::coco::Detection> results;  // for AP (--val-split)
};

// Greedy matching of `b` to the reference `a` (in a's score order): same label, box IoU >= 0.9.
void compare(const ImageOutputs& a, const ImageOutputs& b, Agreement& agreement) {
  const int64_t na = a.detections.scores.size(0), nb = b.detections.scores.size(0);
  agreement.reference += na;
  agreement.other += nb;
  if (nb == 0) {
    for (int64_t i = 0; i < na; ++i) agreement.confident += a.detections.scores[i].item<float>() >= 0.5f;
  }
  if (na == 0 || nb == 0) return;
  const auto iou = instseg::ops::box_iou(a.detections.boxes, b.detections.boxes).contiguous();
  const auto* iou_p = iou.data_ptr<float>();
  const auto la = a.detections.labels.contiguous(), lb = b.detections.labels.contiguous();
  const auto sa = a.detections.scores.contiguous(), sb = b.detections.scores.contiguous();
  std::vector<bool> taken(static_cast<size_t>(nb), false);
  for (int64_t i = 0; i < na; ++i) {
    const bool confident = sa.data_ptr<float>()[i] >= 0.5f;
    agreement.confident += confident;
    int64_t best = -1;
    float best_iou = 0.9f;
    for (int64_t j = 0; j < nb; ++j) {
      if (taken[j] || la.data_ptr<int64_t>()[i] != lb.data_ptr<int64_t>()[j]) continue;
      if (iou_p[i * nb + j] >= best_iou) {
        best_iou = iou_p[i * nb + j];
        best = j;
      }
    }
    if (best < 0) continue;
    taken[best] = true;
    ++agreement.matched;
    agreement.confident_matched += confident;
    agreement.mask_iou_sum += mask_iou(a.masks[i], b.masks[best]);
    agreement.max_score_diff = std::max<double>(
        agreement.max_score_diff, std::abs(sa.data_ptr<float>()[i] - sb.data_ptr<float>()[best]));
  }
}

struct Variant {
  std::string name;
  instseg::LoadedModel loaded;
};

}  // namespace

int main(int argc, char** argv) {
  instseg::keep_freed_memory_in_process();  // as the instseg program does
  CLI::App app{"predict's outputs in bf16 (and unfused fp32) against fused fp32"};
  std::string weights;
  int images = 10;
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  bool unfused = false, val_split = false;
  int show = 0;
  app.add_option("--weights", weights, "A checkpoint or run folder (load_model)")->required();
  app.add_option("--images", images, "Images to predict (tiny_coco val, or the first of --val-split)")
      ->capture_default_str();
  app.add_option("--threads", threads, "Intra-op threads")->capture_default_str();
  app.add_flag("--unfused", unfused, "Also the modules' own code in fp32 (the reference of the parity tests)");
  app.add_flag("--val-split", val_split,
               "Images from the run folder's validation split, and box / mask AP against its ground truth");
  app.add_option("--show", show, "Print each image's top N detections in every precision (to see a disagreement)");
  CLI11_PARSE(app, argc, argv);

  torch::set_num_threads(threads);
  instseg::set_openblas_threads(1);  // as the instseg program sets it

  std::vector<Variant> variants;
  for (const std::string name : {"fp32", "bf16", "unfused"}) {
    if (name == "unfused" && !unfused) continue;
    instseg::ModelOverrides overrides;
    overrides.fused = name != "unfused";
    if (overrides.fused) overrides.precision = instseg::ops::inference_precision_named(name, "--precision");
    variants.push_back({name == "unfused" ? "fp32 unfused" : name, instseg::load_model(weights, overrides)});
  }

  // The images: (tensor, image id) pairs read one at a time.
  std::unique_ptr<instseg::TrainingData> data;
  std::vector<std::string> paths;
  int64_t count = 0;
  if (val_split) {
    const instseg::TrainConfig config = instseg::load_train_config((fs::path(weights) / "config.json").string());
    data = std::make_unique<instseg::TrainingData>(config.data);
    if (!data->val_set()) throw std::runtime_error(weights + ": the run names no validation split");
    count = data->val_set()->size();  // AP needs the whole split
  } else {
    paths = instseg::collect_image_paths({std::string(INSTSEG_SOURCE_DIR) + "/datasets/tiny_coco/val2017"});
    paths.resize(std::min<size_t>(paths.size(), static_cast<size_t>(images)));
    count = static_cast<int64_t>(paths.size());
  }
  auto image_at = [&](int64_t i) -> std::pair<torch::Tensor, int64_t> {
    if (data) {
      const auto sample = data->val_set()->get(i);
      return {sample.image, sample.image_id};
    }
    return {instseg::data::read_image_rgb(paths[static_cast<size_t>(i)]), i};
  };

  torch::InferenceMode guard;
  // Warm-up: first-call allocations, oneDNN primitive creation.
  {
    const auto first = image_at(0).first;
    for (auto& v : variants) v.loaded.model->predict_box_masks({first});
  }
  std::vector<Agreement> agreements(variants.size());
  for (int64_t i = 0; i < count; ++i) {
    const auto [image, image_id] = image_at(i);
    std::vector<ImageOutputs> outputs(variants.size());
    for (size_t v = 0; v < variants.size(); ++v) {
      auto& model = *variants[v].loaded.model;
      const auto start = std::chrono::steady_clock::now();
      instseg::Detections detections = model.predict_box_masks({image})[0];
      const instseg::MaskPaster paster = model.mask_paster(detections, image.size(1), image.size(2));
      agreements[v].seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
      if (data) {
        const auto ids = instseg::with_category_ids(detections, data->categories());
        const auto results = instseg::to_coco_detections(image_id, ids, paster);
        agreements[v].results.insert(agreements[v].results.end(), results.begin(), results.end());
      }
      for (int64_t k = 0; k < paster.size(); ++k) {
        const instseg::MaskRegion region = paster.paste(k);
        BinaryMask mask{region.x, region.y, region.probs > 0.5, 0};
        mask.count = mask.on.sum().item<int64_t>();
        outputs[v].masks.push_back(std::move(mask));
      }
      outputs[v].detections = std::move(detections);
    }
    for (size_t v = 0; v < variants.size() && show > 0; ++v) {
      const auto& d = outputs[v].detections;
      std::printf("image %lld %-12s", static_cast<long long>(i), variants[v].name.c_str());
      for (int64_t k = 0; k < std::min<int64_t>(show, d.scores.size(0)); ++k) {
        const auto b = d.boxes[k];
        std::printf(" [%lld %.4f (%.1f %.1f %.1f %.1f)]", static_cast<long long>(d.labels[k].item<int64_t>()),
                    d.scores[k].item<float>(), b[0].item<float>(), b[1].item<float>(), b[2].item<float>(),
                    b[3].item<float>());
      }
      std::printf("\n");
    }
    agreements[0].other += outputs[0].detections.scores.size(0);
    for (size_t v = 1; v < variants.size(); ++v) compare(outputs[0], outputs[v], agreements[v]);
  }

  std::printf("CPU: %s; threads: %d\n", cpu_description().c_str(), threads);
  std::printf("weights: %s; images: %lld (%s)\n", weights.c_str(), static_cast<long long>(count),
              data ? "the run's validation split" : "tiny_coco val2017");
  const double fp32_seconds = median(agreements[0].seconds);
  std::printf("%-13s %11s %9s %11s %9s %13s %14s %10s %8s", "precision", "detections", "matched", "@>=0.5",
              "mask IoU", "max |dscore|", "median s/img", "speed-up", "");
  if (data) std::printf(" %7s %7s", "box AP", "mask AP");
  std::printf("\n");
  for (size_t v = 0; v < variants.size(); ++v) {
    const Agreement& a = agreements[v];
    const double seconds = median(a.seconds);
    if (v == 0) {
      std::printf("%-13s %11lld %9s %11s %9s %13s %14.3f %9.2fx %8s", variants[v].name.c_str(),
                  static_cast<long long>(a.other), "-", "-", "-", "-", seconds, 1.0, "");
    } else {
      const double share = a.reference ? static_cast<double>(a.matched) / static_cast<double>(a.reference) : 1.0;
      const std::string confident =
          a.confident ? std::to_string(a.confident_matched) + "/" + std::to_string(a.confident) : "-";
      std::printf("%-13s %11lld %8.2f%% %11s %9.4f %13.2e %14.3f %9.2fx %8s", variants[v].name.c_str(),
                  static_cast<long long>(a.other), 100.0 * share, confident.c_str(),
                  a.matched ? a.mask_iou_sum / a.matched : 0.0,
                  a.max_score_diff, seconds, fp32_seconds / seconds, share >= 0.95 ? "" : "(<95%)");
    }
    if (data) {
      const auto box = instseg::evaluation::evaluate(data->val_ground_truth(), a.results,
                                                     instseg::evaluation::IouType::kBbox);
      const auto segm = instseg::evaluation::evaluate(data->val_ground_truth(), a.results,
                                                      instseg::evaluation::IouType::kSegm);
      std::printf(" %7.4f %7.4f", box.stats[0], segm.stats[0]);
    }
    std::printf("\n");
  }
  std::printf("matched: share of fp32 detections with a detection of the same label at box IoU >= 0.9 "
              "(greedy in fp32 score order); @>=0.5: the same for fp32 detections scoring >= 0.5; mask IoU: mean over matched pairs, masks binarised at 0.5\n");
  return 0;
}
