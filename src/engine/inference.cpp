#include "instseg/engine/inference.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <iterator>
#include <new>
#include <optional>
#include <stdexcept>

#include "instseg/coco/results_writer.h"
#include "instseg/coco/rle.h"
#include "instseg/distributed/communicator.h"
#include "instseg/engine/coco_results.h"
#include "instseg/errors.h"
#include "engine/byte_record.h"

namespace instseg {

namespace {

// An allocation that failed inside LibTorch (an image too large for the machine's memory).
bool is_out_of_memory(const c10::Error& e) {
  return std::string(e.what()).find("DefaultCPUAllocator") != std::string::npos;
}

using detail::ByteReader;
using detail::ByteWriter;

void put_image(ByteWriter& out, const ImageResults& image) {
  out.put<int64_t>(image.index);
  out.put_string(image.file_name);
  out.put_string(image.failure);
  out.put<double>(image.model_seconds);
  out.put<uint64_t>(image.detections.size());
  for (const coco::Detection& d : image.detections) {
    out.put<int64_t>(d.image_id);
    out.put<int64_t>(d.category_id);
    for (const double v : d.bbox) out.put<double>(v);
    out.put<uint8_t>(d.has_bbox);
    out.put<double>(d.score);
    out.put<uint8_t>(d.mask.has_value());
    if (d.mask) {
      out.put<uint32_t>(d.mask->h);
      out.put<uint32_t>(d.mask->w);
      out.put_string(coco::to_string(*d.mask));  // compressed: a third of the raw runs' bytes
    }
  }
}

ImageResults get_image(ByteReader& in) {
  ImageResults image;
  image.index = in.get<int64_t>();
  image.file_name = in.get_string();
  image.failure = in.get_string();
  image.model_seconds = in.get<double>();
  image.detections.resize(in.get<uint64_t>());
  for (coco::Detection& d : image.detections) {
    d.image_id = in.get<int64_t>();
    d.category_id = in.get<int64_t>();
    for (double& v : d.bbox) v = in.get<double>();
    d.has_bbox = in.get<uint8_t>() != 0;
    d.score = in.get<double>();
    if (in.get<uint8_t>() != 0) {
      const uint32_t h = in.get<uint32_t>(), w = in.get<uint32_t>();
      d.mask = coco::from_string(in.get_string(), h, w);
    }
  }
  return image;
}

}  // namespace

std::vector<ImageResults> gather_image_results(dist::Communicator& comm, std::vector<ImageResults> mine) {
  std::vector<ImageResults> all;
  if (comm.world_size() == 1) {
    all = std::move(mine);
  } else {
    ByteWriter out;
    for (const ImageResults& image : mine) put_image(out, image);
    mine.clear();  // the memory goes before every rank's copy arrives
    for (const std::string& bytes : comm.all_gather_bytes(out.take())) {
      ByteReader in(bytes);
      while (!in.done()) all.push_back(get_image(in));
    }
  }
  std::sort(all.begin(), all.end(), [](const ImageResults& a, const ImageResults& b) { return a.index < b.index; });
  for (size_t i = 1; i < all.size(); ++i) {
    if (all[i].index == all[i - 1].index) {
      throw std::logic_error("gather_image_results: image " + std::to_string(all[i].index) + " reported twice");
    }
  }
  return all;
}

void inference_on_dataset(MaskRcnnImpl& model, int64_t count, const std::function<InferenceInput(int64_t)>& image_at,
                          const std::function<void(const ImageInference&)>& on_image,
                          const InferenceOptions& options) {
  model.eval();
  // NoGradGuard rather than InferenceMode: the trainer validates a model it goes on training, and
  // tensors a module might keep from an inference-mode forward could not enter autograd later.
  torch::NoGradGuard no_grad;
  if (options.world_size < 1 || options.rank < 0 || options.rank >= options.world_size) {
    throw std::invalid_argument("inference_on_dataset: rank " + std::to_string(options.rank) + " of " +
                                std::to_string(options.world_size));
  }
  for (int64_t i = options.rank; i < count; i += options.world_size) {
    std::optional<InferenceFailure> failure;
    try {
      const InferenceInput input = image_at(i);
      const auto start = std::chrono::steady_clock::now();
      const Detections detections = model.predict_box_masks({input.image}, options.profile)[0];
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
  const auto one_process = dist::single_process();
  return inference_on_dataset(model, dataset, ground_truth, *one_process);
}

DatasetInference inference_on_dataset(MaskRcnnImpl& model, const data::Dataset& dataset,
                                      const coco::Dataset& ground_truth, dist::Communicator& comm) {
  std::vector<ImageResults> mine;
  InferenceOptions options;
  options.categories = &dataset.categories();
  options.rank = comm.rank();
  options.world_size = comm.world_size();
  inference_on_dataset(
      model, dataset.size(),
      [&](int64_t i) {
        data::Sample sample = dataset.get(i);
        return InferenceInput{std::move(sample.image), sample.image_id, ground_truth.image(sample.image_id).file_name};
      },
      [&](const ImageInference& image) {
        mine.push_back(ImageResults{image.index, image.input.file_name, image.results, "", image.model_seconds});
      },
      options);
  std::vector<ImageResults> all = gather_image_results(comm, std::move(mine));
  DatasetInference out;
  if (!comm.is_main()) return out;
  // Image after image in dataset order: the bytes do not depend on how the images were shared.
  coco::ResultsWriter results_file;
  for (ImageResults& image : all) {
    results_file.add(image.detections, image.file_name);
    out.detections.insert(out.detections.end(), std::make_move_iterator(image.detections.begin()),
                          std::make_move_iterator(image.detections.end()));
  }
  out.results_json = results_file.dump();
  return out;
}

}  // namespace instseg
