// inference_on_dataset's pipeline (engine/inference.h): decoding on a reader thread and writing on
// a writer thread around the model gives what one image after another gives, byte for byte, with
// the same order and the same failures; --batch runs images of one size in one forward pass with
// each image's own results (within float rounding).
#include "instseg/engine/inference.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <dirent.h>

#include <functional>
#include <iterator>
#include <map>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "instseg/coco/results_writer.h"
#include "instseg/data/image_io.h"
#include "instseg/engine/model_factory.h"
#include "instseg/errors.h"
#include "support/reference.h"

namespace instseg {
namespace {

// r18.pth (tests/reference/interop_cli.py): a ResNet-18-FPN Mask R-CNN in torchvision's layout with
// random heads, loaded as predict loads it (the fused CPU path): every image gets many low-scoring
// detections with masks, plenty to compare. Small inputs keep an image well under a second.
MaskRcnn& model() {
  static LoadedModel loaded = [] {
    ModelOverrides o;
    o.min_size = 160;
    o.max_size = 224;
    o.detections_per_image = 50;
    return load_model(testing::reference_dir("interop_cli") + "/r18.pth", o);
  }();
  return loaded.model;
}

// Crops of tiny_coco images, `height` x `width` each (the same size when the sizes are equal).
std::vector<torch::Tensor> crops(const std::vector<std::pair<int64_t, int64_t>>& sizes) {
  static const char* const kFiles[] = {"000000006818.jpg", "000000017627.jpg", "000000037777.jpg",
                                       "000000087038.jpg", "000000174482.jpg", "000000122745.jpg"};
  std::vector<torch::Tensor> out;
  for (size_t i = 0; i < sizes.size(); ++i) {
    const torch::Tensor image = data::read_image_rgb(
        testing::source_path(std::string("datasets/tiny_coco/val2017/") + kFiles[i % std::size(kFiles)]));
    out.push_back(image.narrow(1, 0, sizes[i].first).narrow(2, 0, sizes[i].second).contiguous());
  }
  return out;
}

// What a run did, in the order it happened: "image i" / "failure i (message)", and each image's
// results as a results file writes them.
struct Record {
  std::vector<std::string> events;
  std::map<int64_t, std::string> results;  // index -> its results file text
  std::map<int64_t, std::vector<coco::Detection>> detections_of;
  std::map<int64_t, double> seconds;       // index -> model_seconds
  size_t detections = 0;
  std::vector<std::thread::id> reader_threads, writer_threads;
  int image_at_calls = 0;
};

InferenceOptions with(bool overlap, int batch = 1) {
  InferenceOptions o;
  o.overlap = overlap;
  o.batch = batch;
  return o;
}

// Runs the model over `images`; image_at throws where `throw_at` says (index -> what).
Record run_all(const std::vector<torch::Tensor>& images, InferenceOptions options, bool report_failures = true,
        const std::function<void(int64_t)>& on_image_hook = {}, const std::function<void(int64_t)>& image_at_hook = {}) {
  Record r;
  if (report_failures) {
    options.on_failure = [&](const InferenceFailure& f) {
      r.events.push_back("failure " + std::to_string(f.index) + (f.out_of_memory ? " oom" : "") + " (" + f.message +
                         ")");
      r.writer_threads.push_back(std::this_thread::get_id());
    };
  }
  inference_on_dataset(
      *model(), static_cast<int64_t>(images.size()),
      [&](int64_t i) {
        ++r.image_at_calls;
        r.reader_threads.push_back(std::this_thread::get_id());
        if (image_at_hook) image_at_hook(i);
        return InferenceInput{images[static_cast<size_t>(i)], 100 + i, "image" + std::to_string(i) + ".jpg"};
      },
      [&](const ImageInference& image) {
        r.writer_threads.push_back(std::this_thread::get_id());
        r.events.push_back("image " + std::to_string(image.index));
        if (on_image_hook) on_image_hook(image.index);
        EXPECT_EQ(image.input.image_id, 100 + image.index);
        EXPECT_EQ(image.masks.size(), image.detections.boxes.size(0));
        coco::ResultsWriter writer;
        writer.add(image.results, image.input.file_name);
        r.results[image.index] = writer.dump();
        r.detections_of[image.index] = image.results;
        r.seconds[image.index] = image.model_seconds;
        r.detections += image.results.size();
      },
      options);
  return r;
}

std::vector<std::string> image_events(std::initializer_list<int> indices) {
  std::vector<std::string> out;
  for (const int i : indices) out.push_back("image " + std::to_string(i));
  return out;
}

// The threads of this process, as the kernel lists them.
int thread_count() {
  int n = 0;
  if (DIR* dir = opendir("/proc/self/task")) {
    while (const dirent* entry = readdir(dir)) n += entry->d_name[0] != '.';
    closedir(dir);
  }
  return n;
}

TEST(InferencePipeline, OverlappedGivesTheResultsOfOneImageAfterAnotherByteForByte) {
  const auto images = crops({{160, 200}, {120, 180}, {160, 200}, {200, 150}, {140, 140}});
  const Record sequential = run_all(images, with(false));
  const Record overlapped = run_all(images, with(true));
  EXPECT_EQ(sequential.events, image_events({0, 1, 2, 3, 4}));
  EXPECT_EQ(overlapped.events, image_events({0, 1, 2, 3, 4}));
  EXPECT_GT(sequential.detections, 100u);  // many boxes, scores and masks compared below
  EXPECT_EQ(overlapped.results, sequential.results);
  // Where each part ran: the caller's thread alone, or a reader and a writer of their own.
  const auto caller = std::this_thread::get_id();
  for (const auto& id : sequential.reader_threads) EXPECT_EQ(id, caller);
  for (const auto& id : sequential.writer_threads) EXPECT_EQ(id, caller);
  ASSERT_EQ(overlapped.reader_threads.size(), 5u);
  ASSERT_EQ(overlapped.writer_threads.size(), 5u);
  EXPECT_NE(overlapped.reader_threads[0], caller);
  EXPECT_NE(overlapped.writer_threads[0], caller);
  EXPECT_NE(overlapped.reader_threads[0], overlapped.writer_threads[0]);
}

TEST(InferencePipeline, UnreadableAndTooLargeImagesAreReportedInOrderAndTheRestPredicted) {
  const auto images = crops({{120, 160}, {120, 160}, {120, 160}, {120, 160}, {120, 160}});
  auto failing_read = [](int64_t i) {
    if (i == 1) throw InputError("image1.jpg: not a decodable image");
    if (i == 3) throw std::bad_alloc();
  };
  for (const bool overlap : {false, true}) {
    SCOPED_TRACE(overlap ? "overlapped" : "sequential");
    const Record r = run_all(images, with(overlap), true, {}, failing_read);
    EXPECT_EQ(r.events, (std::vector<std::string>{"image 0", "failure 1 (image1.jpg: not a decodable image)",
                                                  "image 2", "failure 3 oom (out of memory)", "image 4"}));
    EXPECT_EQ(r.results.size(), 3u);
    // An error of on_image that on_failure reports (a file that cannot be written) is one image's too.
    const Record w = run_all(images, with(overlap), true, [](int64_t i) {
      if (i == 2) throw InputError("image2.overlay.jpg: cannot write");
    });
    EXPECT_EQ(w.events, (std::vector<std::string>{"image 0", "image 1", "image 2",
                                                  "failure 2 (image2.overlay.jpg: cannot write)", "image 3",
                                                  "image 4"}));
  }
}

TEST(InferencePipeline, AnErrorPropagatesAfterTheImagesBeforeItAndLeavesNoThread) {
  const auto images = crops({{120, 160}, {120, 160}, {120, 160}, {120, 160}, {120, 160}});
  run_all(images, with(true));  // LibTorch's and OpenMP's own threads, started once, are there before counting
  const int threads_before = thread_count();
  for (const bool overlap : {false, true}) {
    SCOPED_TRACE(overlap ? "overlapped" : "sequential");
    // Thrown by on_image: the call returns with it, and no image after it reaches on_image.
    std::vector<std::string> events;
    InferenceOptions options = with(overlap);
    options.on_failure = [&](const InferenceFailure& f) { events.push_back("failure " + std::to_string(f.index)); };
    int image_at_calls = 0;
    try {
      inference_on_dataset(
          *model(), 5,
          [&](int64_t i) {
            ++image_at_calls;
            return InferenceInput{images[static_cast<size_t>(i)], i, ""};
          },
          [&](const ImageInference& image) {
            events.push_back("image " + std::to_string(image.index));
            if (image.index == 1) throw std::runtime_error("disk on fire at image 1");
          },
          options);
      ADD_FAILURE() << "no exception";
    } catch (const std::runtime_error& e) {
      EXPECT_STREQ(e.what(), "disk on fire at image 1");
    }
    EXPECT_EQ(events, image_events({0, 1}));
    EXPECT_LE(image_at_calls, 5);
    EXPECT_EQ(thread_count(), threads_before);

    // Thrown by image_at without on_failure: the images before it are written first, then it propagates.
    events.clear();
    options.on_failure = nullptr;
    try {
      inference_on_dataset(
          *model(), 5,
          [&](int64_t i) {
            if (i == 3) throw InputError("image3.jpg: truncated");
            return InferenceInput{images[static_cast<size_t>(i)], i, ""};
          },
          [&](const ImageInference& image) { events.push_back("image " + std::to_string(image.index)); }, options);
      ADD_FAILURE() << "no exception";
    } catch (const InputError& e) {
      EXPECT_STREQ(e.what(), "image3.jpg: truncated");
    }
    EXPECT_EQ(events, image_events({0, 1, 2}));
    EXPECT_EQ(thread_count(), threads_before);
  }
}

TEST(InferencePipeline, AJobsShareIsItsOwnImagesInOrder) {
  const auto images = crops({{120, 160}, {120, 160}, {120, 160}, {120, 160}, {120, 160}});
  InferenceOptions options = with(true);
  options.rank = 1;
  options.world_size = 2;
  const Record r = run_all(images, options);
  EXPECT_EQ(r.events, image_events({1, 3}));
  EXPECT_EQ(r.image_at_calls, 2);
}

TEST(InferencePipeline, BatchesOfOneSizeGiveEachImageItsOwnResults) {
  // Two groups of one size, then an image of another size, then one of the first size again.
  const auto images = crops({{160, 200}, {160, 200}, {160, 200}, {120, 180}, {160, 200}});
  const Record alone = run_all(images, with(true, 1));
  for (const bool overlap : {false, true}) {
    SCOPED_TRACE(overlap ? "overlapped" : "sequential");
    const Record batched = run_all(images, with(overlap, 2));
    EXPECT_EQ(batched.events, image_events({0, 1, 2, 3, 4}));
    // An image's seconds are its group's shared: equal within a group, the groups {0, 1}, {2}, {3}, {4}.
    EXPECT_EQ(batched.seconds.at(0), batched.seconds.at(1));
    EXPECT_NE(batched.seconds.at(1), batched.seconds.at(2));
    EXPECT_NE(batched.seconds.at(2), batched.seconds.at(3));
    EXPECT_NE(batched.seconds.at(3), batched.seconds.at(4));
    ASSERT_GT(alone.detections, 100u);
    for (const auto& [index, x] : alone.detections_of) {
      SCOPED_TRACE("image " + std::to_string(index));
      const std::vector<coco::Detection>& y = batched.detections_of.at(index);
      ASSERT_EQ(x.size(), y.size());
      for (size_t k = 0; k < x.size(); ++k) {
        EXPECT_EQ(x[k].category_id, y[k].category_id);
        // Batched kernels round differently in the last bits; more is a batching bug (an image
        // seeing its neighbour's pixels, padding or proposals).
        EXPECT_NEAR(x[k].score, y[k].score, 1e-4);
        for (int c = 0; c < 4; ++c) EXPECT_NEAR(x[k].bbox[c], y[k].bbox[c], 1e-2);
      }
    }
  }
  EXPECT_THROW(run_all(images, with(true, 0)), std::invalid_argument);
}

}  // namespace
}  // namespace instseg
