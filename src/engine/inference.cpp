#include "instseg/engine/inference.h"

#include <torch/torch.h>

#include <ATen/ThreadLocalState.h>
#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <exception>
#include <iterator>
#include <new>
#include <optional>
#include <stdexcept>
#include <utility>

#include "instseg/coco/results_writer.h"
#include "instseg/coco/rle.h"
#include "instseg/distributed/communicator.h"
#include "instseg/engine/coco_results.h"
#include "instseg/errors.h"
#include "engine/bounded_queue.h"
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

namespace {

// The failure that an image's exception stands for when options.on_failure is set: InputError
// (unreadable), std::bad_alloc or LibTorch's allocator (out of memory). Nothing: it propagates.
std::optional<InferenceFailure> reported_failure(int64_t index, const std::exception_ptr& error,
                                                 const InferenceOptions& options) {
  if (!options.on_failure) return std::nullopt;
  try {
    std::rethrow_exception(error);
  } catch (const InputError& e) {
    return InferenceFailure{index, false, e.what()};
  } catch (const std::bad_alloc&) {
    return InferenceFailure{index, true, "out of memory"};
  } catch (const c10::Error& e) {
    if (is_out_of_memory(e)) return InferenceFailure{index, true, "out of memory"};
  } catch (...) {
  }
  return std::nullopt;
}

// One image as the reader hands it to the model.
struct ReadImage {
  int64_t index = 0;
  InferenceInput input;
  std::exception_ptr error;  // image_at's, when it threw (input is then empty)
};

// One image as the model hands it to the writer: it owns what ImageInference refers to.
struct PredictedImage {
  int64_t index = 0;
  InferenceInput input;
  Detections detections;
  std::optional<MaskPaster> masks;
  double seconds = 0.0;
  std::optional<InferenceFailure> failure;  // set: the image failed and the fields above are empty
};

// Sets the OpenMP team size of LibTorch's operations started on this thread only. at::set_num_threads
// would not do: LibTorch 1.13 also stores its value for every thread that starts afterwards. OpenMP
// keeps the setting per thread; LibTorch's own first-use setup of this thread runs first, or it
// would overwrite ours at the first operation. Looked up at run time: LibTorch links the OpenMP.
void set_this_thread_intra_op_threads(int threads) {
  at::get_num_threads();
  using SetThreads = void (*)(int);
  if (void* symbol = dlsym(RTLD_DEFAULT, "omp_set_num_threads")) reinterpret_cast<SetThreads>(symbol)(threads);
}

// The images of the options' share in order, from image_at, and each predicted image to on_image /
// on_failure in order. Overlapped: image_at on a reader thread, the writer's work on a writer thread,
// each with at most kQueued images waiting; else both inline on the calling thread.
class ImagePipeline {
 public:
  static constexpr size_t kQueued = 2;

  ImagePipeline(int64_t count, const std::function<InferenceInput(int64_t)>& image_at,
                const std::function<void(const ImageInference&)>& on_image, const InferenceOptions& options)
      : count_(count), image_at_(image_at), on_image_(on_image), options_(options), next_index_(options.rank) {
    if (!options.overlap) return;
    // Gradient and inference mode are per thread: the worker threads run in the caller's.
    const at::ThreadLocalState caller;
    reader_.emplace(
        [this, caller] {
          const at::ThreadLocalStateGuard state(caller);
          set_this_thread_intra_op_threads(options_.worker_intra_op_threads);
          while (std::optional<ReadImage> image = read_inline()) {
            // An error that ends the run ends the reading too.
            const bool go_on = !image->error || reported_failure(image->index, image->error, options_);
            if (!read_.push(std::move(*image)) || !go_on) break;
          }
        },
        [this] { read_.close(); });
    writer_.emplace(
        [this, caller] {
          const at::ThreadLocalStateGuard state(caller);
          set_this_thread_intra_op_threads(options_.worker_intra_op_threads);
          while (std::optional<PredictedImage> image = written_.pop()) write(std::move(*image));
        },
        [this] {
          written_.close();  // a writer that failed refuses the next image
          written_.clear();
        });
  }

  ImagePipeline(const ImagePipeline&) = delete;
  ImagePipeline& operator=(const ImagePipeline&) = delete;

  ~ImagePipeline() {
    read_.close();
    written_.close();
    if (reader_) reader_->join();
    if (writer_) writer_->join();
  }

  // The next image of the share; nothing after the last.
  std::optional<ReadImage> next() { return reader_ ? read_.pop() : read_inline(); }

  // Hands a predicted image to the writer. false: the writer failed (finish() throws its error).
  bool deliver(PredictedImage image) {
    if (!writer_) {
      write(std::move(image));
      return true;
    }
    return written_.push(std::move(image));
  }

  // The run is over (or the model's loop gave up): the reader stops, the writer does what it was
  // given and ends. Throws the writer's error.
  void finish() {
    if (std::exception_ptr error = stop()) std::rethrow_exception(error);
  }

  // As finish, but returns the writer's error. Its images come before the one the caller failed
  // on, so that is the error a run of one image after another would have raised.
  std::exception_ptr stop() noexcept {
    read_.close();
    read_.clear();  // the images read ahead are not needed
    written_.close();
    std::exception_ptr error;
    if (reader_) reader_->join();
    if (writer_) error = writer_->error();
    return error;
  }

 private:
  std::optional<ReadImage> read_inline() {
    if (next_index_ >= count_) return std::nullopt;
    ReadImage image;
    image.index = next_index_;
    next_index_ += options_.world_size;
    try {
      image.input = image_at_(image.index);
    } catch (...) {
      image.error = std::current_exception();
    }
    return image;
  }

  // The COCO results and on_image, or on_failure: what a run of one image after another did after the model.
  void write(PredictedImage image) {
    std::optional<InferenceFailure> failure = std::move(image.failure);
    if (!failure) {
      try {
        std::vector<coco::Detection> results = to_coco_detections(
            image.input.image_id,
            options_.categories ? with_category_ids(image.detections, *options_.categories) : image.detections,
            *image.masks);
        on_image_(ImageInference{image.index, image.input, image.detections, *image.masks, std::move(results),
                                 image.seconds});
        return;
      } catch (...) {
        failure = reported_failure(image.index, std::current_exception(), options_);
        if (!failure) throw;
      }
    }
    options_.on_failure(*failure);
  }

  const int64_t count_;
  const std::function<InferenceInput(int64_t)>& image_at_;
  const std::function<void(const ImageInference&)>& on_image_;
  const InferenceOptions& options_;
  int64_t next_index_;  // the reader's
  detail::BoundedQueue<ReadImage> read_{kQueued};
  detail::BoundedQueue<PredictedImage> written_{kQueued};
  std::optional<detail::Worker> reader_, writer_;  // after the queues they use: they end first
};

// The model over a group of images of one size (one forward pass for all), each with its mask
// paster; an image's seconds are the group's shared equally. A group too large for the memory runs
// again image by image, so that only an image that fails on its own is reported.
std::vector<PredictedImage> predict_group(MaskRcnnImpl& model, std::vector<ReadImage> group,
                                          const InferenceOptions& options) {
  std::vector<PredictedImage> out(group.size());
  try {
    std::vector<torch::Tensor> images;
    for (const ReadImage& image : group) images.push_back(image.input.image);
    const auto start = std::chrono::steady_clock::now();
    std::vector<Detections> detections = model.predict_box_masks(images, options.profile);
    for (size_t i = 0; i < group.size(); ++i) {
      out[i].masks.emplace(model.mask_paster(detections[i], images[i].size(1), images[i].size(2)));
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    for (size_t i = 0; i < group.size(); ++i) {
      out[i].index = group[i].index;
      out[i].input = std::move(group[i].input);
      out[i].detections = std::move(detections[i]);
      out[i].seconds = seconds / static_cast<double>(group.size());
    }
  } catch (...) {
    std::optional<InferenceFailure> failure = reported_failure(group.front().index, std::current_exception(), options);
    if (!failure) throw;
    out.clear();
    if (group.size() == 1) {
      out.emplace_back().failure = std::move(failure);
      out.back().index = group.front().index;
      return out;
    }
    for (ReadImage& image : group) {
      std::vector<ReadImage> alone;
      alone.push_back(std::move(image));
      out.push_back(std::move(predict_group(model, std::move(alone), options).front()));
    }
  }
  return out;
}

}  // namespace

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
  if (options.batch < 1) throw std::invalid_argument("inference_on_dataset: batch " + std::to_string(options.batch));
  if (options.worker_intra_op_threads < 1) {
    throw std::invalid_argument("inference_on_dataset: worker_intra_op_threads " +
                                std::to_string(options.worker_intra_op_threads));
  }
  ImagePipeline pipeline(count, image_at, on_image, options);
  try {
    std::optional<ReadImage> waiting;  // read, but of another size than the group before it
    for (;;) {
      std::optional<ReadImage> first = waiting ? std::exchange(waiting, std::nullopt) : pipeline.next();
      if (!first) break;
      std::vector<PredictedImage> predicted;
      if (first->error) {
        std::optional<InferenceFailure> failure = reported_failure(first->index, first->error, options);
        if (!failure) std::rethrow_exception(first->error);
        predicted.emplace_back().failure = std::move(failure);
        predicted.back().index = first->index;
      } else {
        std::vector<ReadImage> group;
        group.push_back(std::move(*first));
        while (group.size() < static_cast<size_t>(options.batch)) {
          waiting = pipeline.next();
          if (!waiting || waiting->error || !waiting->input.image.sizes().equals(group.front().input.image.sizes())) {
            break;
          }
          group.push_back(std::move(*waiting));
          waiting.reset();
        }
        predicted = predict_group(model, std::move(group), options);
      }
      bool writing = true;
      for (PredictedImage& image : predicted) {
        if (!(writing = pipeline.deliver(std::move(image)))) break;
      }
      if (!writing) break;  // the writer failed: finish() throws its error
    }
  } catch (...) {
    const std::exception_ptr error = pipeline.stop();
    if (error) std::rethrow_exception(error);
    throw;
  }
  pipeline.finish();
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
