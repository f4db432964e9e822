#include "instseg/engine/inference.h"

#include <torch/torch.h>

#include <chrono>
#include <new>
#include <optional>

#include "instseg/coco/results_writer.h"
#include "instseg/engine/coco_results.h"
#include "instseg/errors.h"

namespace instseg {

namespace {

// An allocation that failed inside LibTorch (an image too large for the machine's memory).
bool is_out_of_memory(const c10::Error& e) {
  return std::string(e.what()).find("DefaultCPUAllocator") != std::string::npos;
}

}  // namespace

void inference_on_dataset(MaskRcnnImpl& model, int64_t count, const std::function<InferenceInput(int64_t)>& image_at,
                          const std::function<void(const ImageInference&)>& on_image,
                          const InferenceOptions& options) {
  model.eval();
  // NoGradGuard rather than InferenceMode: the trainer validates a model it goes on training, and
  // tensors a module might keep from an inference-mode forward could not enter autograd later.
  torch::NoGradGuard no_grad;
  for (int64_t i = 0; i < count; ++i) {
    std::optional<InferenceFailure> failure;
    try {
      const InferenceInput input = image_at(i);
      const auto start = std::chrono::steady_clock::now();
      const Detections detections = model.predict_box_masks({input.image})[0];
      const MaskPaster masks = model.mask_paster(detections, input.image.size(1), input.image.size(2));
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      std::vector<coco::Detection> results = to_coco_detections(
          input.image_id, options.categories ? with_category_ids(detections, *options.categories) : detections, masks);
      on_image(ImageInference{i, input, detections, masks, std::move(results), seconds});
    } catch (const InputError& e) {
      if (!options.on_failure) throw;
      failure = InferenceFailure{i, false, e.what()};
    } catch (const std::bad_alloc&) {
      if (!options.on_failure) throw;
      failure = InferenceFailure{i, true, "out of memory"};
    } catch (const c10::Error& e) {
      if (!options.on_failure || !is_out_of_memory(e)) throw;
      failure = InferenceFailure{i, true, "out of memory"};
    }
    if (failure) options.on_failure(*failure);
  }
}

DatasetInference inference_on_dataset(MaskRcnnImpl& model, const data::Dataset& dataset,
                                      const coco::Dataset& ground_truth) {
  DatasetInference out;
  coco::ResultsWriter results_file;
  InferenceOptions options;
  options.categories = &dataset.categories();
  inference_on_dataset(
      model, dataset.size(),
      [&](int64_t i) {
        data::Sample sample = dataset.get(i);
        return InferenceInput{std::move(sample.image), sample.image_id, ground_truth.image(sample.image_id).file_name};
      },
      [&](const ImageInference& image) {
        results_file.add(image.results, image.input.file_name);
        out.detections.insert(out.detections.end(), image.results.begin(), image.results.end());
      },
      options);
  out.results_json = results_file.dump();
  return out;
}

}  // namespace instseg
