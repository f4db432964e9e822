#pragma once
// Runs a model over a sequence of images: the one "predict every image" loop behind the trainer's
// validation, `predict` over a folder, the demo and the benches (in the spirit of Detectron2's
// inference_on_dataset). Each image's masks stay per box (MaskRcnn::predict_box_masks) and are
// pasted one at a time (mask_paster), so memory follows one box, not K image-sized masks; the
// COCO results are byte for byte those of the whole paste. One path, so that validation and
// predict give identical results for the same model and image.
//
// In a job of several ranks each rank runs its share of the images (InferenceOptions::rank and
// world_size) and gather_image_results brings the ranks' results together in sequence order,
// exactly (scores and boxes bit for bit), so a job writes the files one process writes.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "instseg/coco/dataset.h"
#include "instseg/coco/results.h"
#include "instseg/data/dataset.h"
#include "instseg/modeling/mask_rcnn.h"

namespace instseg::dist {
class Communicator;
}

namespace instseg {

struct StageProfile;

// One image to run and the ids its results carry.
struct InferenceInput {
  torch::Tensor image;    // [3, H, W] float RGB in [0, 1], the image's own size
  int64_t image_id = 0;   // COCO image id of its results
  std::string file_name;  // as results files name it
};

// What the model made of one image.
struct ImageInference {
  int64_t index;                         // position in the sequence
  const InferenceInput& input;
  const Detections& detections;          // model labels 1..K; masks per box [K, 1, M, M]
  const MaskPaster& masks;               // pastes detection k's mask into the image's pixels
  std::vector<coco::Detection> results;  // COCO results (category ids when `categories` was given)
  double model_seconds;                  // predict_box_masks + mask_paster, for timings
};

// One image that failed (InferenceOptions::on_failure).
struct InferenceFailure {
  int64_t index = 0;
  bool out_of_memory = false;  // else unreadable: `message` is the InputError's, naming the image
  std::string message;
};

struct InferenceOptions {
  // Labels -> the data's category ids in `results`; null: results carry the model's labels.
  const data::CategoryMap* categories = nullptr;
  // Set: an image that cannot be read (InputError from image_at) or predicted for lack of memory
  // is reported here and the run goes on. Unset: those errors propagate.
  std::function<void(const InferenceFailure&)> on_failure;
  // A job's share: only the images i with i % world_size == rank are run (image_at, on_image and
  // on_failure still see their indices in the whole sequence). One process: 0 of 1, every image.
  int rank = 0;
  int world_size = 1;
  // Set: each image's stage times are added to it (common/stage_profile.h).
  StageProfile* profile = nullptr;
  // Up to this many consecutive images of the same size (in the options' share) run in one forward
  // pass (predict_box_masks on a vector); each image's model_seconds is the pass's shared equally.
  // 1: one image per forward. Batched kernels round differently, so results may differ from one
  // image's run in the last float bits (a score, a box edge, a mask pixel at the threshold). A batch
  // that runs out of memory runs again image by image. Its speed: docs/benchmarks.md.
  int batch = 1;
  // Decoding, the model and writing overlapped: image_at runs on a reader thread, up to 2 images
  // ahead of the model, and the COCO results, on_image and on_failure on a writer thread, up to 2
  // images behind it, while the model runs on the calling thread. Results are the same either way.
  // false: everything on the calling thread, one image after another. Off by default: on the
  // 2-core machine of docs/benchmarks.md ("Folder throughput") the model's two OpenMP threads
  // already take both cores and the overlapped run measured no faster (where cores are left over,
  // e.g. predict --threads below the core count, it may pay: not measured yet).
  bool overlap = false;
  // LibTorch's intra-op (OpenMP) threads for the operations of the reader and writer threads
  // (decoding's tensor, mask pasting), set for those threads alone: the model's threads keep the
  // cores (docs/benchmarks.md, "Folder throughput").
  int worker_intra_op_threads = 1;
};

// Runs `model` (switched to eval mode, no gradients) over images 0 .. count-1 (those of the
// options' share), in order, and hands each image's inference to on_image. image_at is called once
// per image, in order; on_image and on_failure are called in index order, one at a time.
// With options.overlap image_at runs on a reader thread and on_image / on_failure on a
// writer thread, concurrently with the model and with each other, in the calling thread's
// gradient / inference mode: they must not share unguarded state with each other or with the
// model. image_at may have run for a few images past one whose error ends the run. An error that
// propagates (not one on_failure reports) does so once both threads have ended, after on_image /
// on_failure were called for every image before it, as in a run of one image after another; an
// exception thrown by on_image or on_failure ends the run the same way.
void inference_on_dataset(MaskRcnnImpl& model, int64_t count, const std::function<InferenceInput(int64_t)>& image_at,
                          const std::function<void(const ImageInference&)>& on_image,
                          const InferenceOptions& options = {});

// A dataset's inference gathered: every result (for the evaluator) and the results file.
struct DatasetInference {
  std::vector<coco::Detection> detections;  // with the dataset's category ids
  std::string results_json;                 // COCO results list, each entry with its "file_name"
};

// Every image of `dataset`, results with its category ids and named by `ground_truth`'s file names
// (the split as COCO instances: TrainingData::val_ground_truth()).
DatasetInference inference_on_dataset(MaskRcnnImpl& model, const data::Dataset& dataset,
                                      const coco::Dataset& ground_truth);
// The same in a job: this rank runs images i % world == rank, the ranks' results are gathered,
// and the main rank gets every image's, in dataset order, byte for byte what the overload above
// gives in one process. The other ranks get an empty DatasetInference. Every rank must call it.
DatasetInference inference_on_dataset(MaskRcnnImpl& model, const data::Dataset& dataset,
                                      const coco::Dataset& ground_truth, dist::Communicator& comm);

// One image's part of a job's results, as ranks exchange them.
struct ImageResults {
  int64_t index = 0;                        // in the sequence
  std::string file_name;                    // as results files name it
  std::vector<coco::Detection> detections;  // the image's COCO results
  std::string failure;                      // non-empty: the image failed (InferenceFailure's message)
  double model_seconds = 0.0;
};

// Every rank's image results on every rank, ordered by index (each rank passes those of the
// images it ran). Exact: doubles travel bit for bit, masks as their compressed RLE. One process:
// `mine` sorted, nothing serialised. Every rank must call it; DistributedError as the collectives,
// std::logic_error when two ranks report the same index.
std::vector<ImageResults> gather_image_results(dist::Communicator& comm, std::vector<ImageResults> mine);

}  // namespace instseg
