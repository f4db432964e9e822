#pragma once
// What the trainer's validation computes (src/engine/hooks/validation_hook.cpp writes it down):
// COCO box and mask AP of a split's predictions (inference_on_dataset, as `predict` runs the
// model) and its mean loss terms, on one process or shared across a job's ranks with the same
// numbers.
#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "instseg/coco/dataset.h"
#include "instseg/data/dataset.h"
#include "instseg/engine/inference.h"
#include "instseg/evaluation/coco_evaluator.h"
#include "instseg/modeling/mask_rcnn.h"

namespace instseg {

struct DatasetValidation {
  DatasetInference predictions;  // the main rank's: every image's results, in dataset order; others: empty
  std::vector<evaluation::EvalResult> evaluations;  // the main rank's: bbox, segm; others: empty
  std::array<double, 12> bbox_stats{};   // COCOeval.stats, on every rank (the main rank's, broadcast)
  std::array<double, 12> segm_stats{};
  std::map<std::string, double> losses;  // mean loss terms over the split, on every rank
};

// Rank r of `comm` runs the images i with i % world == r; predictions and per-image losses are
// gathered, the main rank scores them and broadcasts the stats. Every rank must call it, with
// the same weights. The losses: the model in eval mode (batch norm on its running statistics),
// no gradients; each image's random draws (size, anchors, proposals) come from a generator seeded
// by (seed, image index) alone, never the global one the training draws from, so neither the
// number of ranks nor run.eval_every changes any number. The sums run in dataset order: a job's
// numbers are one process's, to the bit.
DatasetValidation validate_on_dataset(MaskRcnnImpl& model, const data::Dataset& dataset,
                                      const coco::Dataset& ground_truth, uint64_t seed, dist::Communicator& comm);

}  // namespace instseg
