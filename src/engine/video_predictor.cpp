#include "instseg/engine/video_predictor.h"

#include <torch/torch.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <exception>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/videoio.hpp>
#include <optional>
#include <regex>
#include <thread>

#include "engine/bounded_queue.h"
#include "instseg/coco/results_writer.h"
#include "instseg/common/progress_bar.h"
#include "instseg/data/image_io.h"
#include "instseg/engine/image_predictor.h"
#include "instseg/errors.h"

namespace instseg {

namespace fs = std::filesystem;

bool is_image_sequence(const std::string& path) {
  // OpenCV's image-sequence reader takes a printf integer field: %d, %4d, %04d.
  static const std::regex kField("%0?[0-9]*d");
  return std::regex_search(fs::path(path).filename().string(), kField);
}

bool is_video_input(const std::string& path) {
  if (is_image_sequence(path)) return true;
  std::string ext = fs::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  static const char* const kExtensions[] = {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm",
                                            ".mpg", ".mpeg", ".ts",  ".wmv", ".flv", ".ogv"};
  return std::any_of(std::begin(kExtensions), std::end(kExtensions), [&](const char* e) { return ext == e; });
}

std::string video_frame_line(const std::string& video_name, int64_t frame, double seconds,
                             const std::vector<coco::Detection>& results) {
  // The entries exactly as predictions.json writes them, on one line: the writer puts newlines
  // only between entries (strings escape theirs).
  coco::ResultsWriter writer;
  writer.add(results);
  std::string entries = writer.dump();
  entries.erase(std::remove(entries.begin(), entries.end(), '\n'), entries.end());
  std::string line = nlohmann::json{{"file_name", video_name}, {"frame", frame}, {"time", seconds}}.dump();
  line.pop_back();  // the closing brace: results follow
  return line + ",\"results\":" + entries + "}";
}

namespace {

using detail::BoundedQueue;
using detail::Worker;

struct DecodedFrame {
  int64_t index = 0;
  cv::Mat bgr;
  torch::Tensor rgb;  // defined for the frames to predict
};

struct DrawnFrame {
  cv::Mat bgr;
  std::shared_ptr<const ImagePrediction> prediction;  // the latest predicted frame's; null before the first
};

cv::VideoWriter open_writer(const std::string& path, double fps, int width, int height) {
  std::string ext = fs::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  // mp4v and MJPG are FFmpeg's own encoders (no external library), in Debian's OpenCV 4.6.
  const int fourcc =
      ext == ".avi" ? cv::VideoWriter::fourcc('M', 'J', 'P', 'G') : cv::VideoWriter::fourcc('m', 'p', '4', 'v');
  cv::VideoWriter writer(path, cv::CAP_FFMPEG, fourcc, fps, cv::Size(width, height));
  if (!writer.isOpened()) {
    throw InputError(path + ": cannot write the annotated video (OpenCV's FFmpeg writer refused " +
                     (ext == ".avi" ? std::string("MJPG") : std::string("mp4v")) + " at " + std::to_string(width) +
                     "x" + std::to_string(height) + ")");
  }
  return writer;
}

}  // namespace

VideoPredictResult predict_video(ImagePredictor& predictor, const std::string& input,
                                 const VideoPredictOptions& options,
                                 const std::function<void(const std::string& line)>& on_line) {
  if (options.every < 1) throw ConfigError("predict: --every must be >= 1, got " + std::to_string(options.every));
  if (!(options.sequence_fps > 0)) throw ConfigError("predict: --fps must be > 0");
  const std::string name = options.name.empty() ? input : options.name;
  const bool sequence = is_image_sequence(input);
  VideoPredictResult result;

  // FFmpeg for files (the same decoder on every machine, not whichever backend OpenCV tries first);
  // OpenCV's own image reader for sequences.
  cv::VideoCapture capture;
  if (!sequence && !fs::is_regular_file(input)) {
    result.failure = input + ": no such video file";
    return result;
  }
  capture.open(input, sequence ? cv::CAP_IMAGES : cv::CAP_FFMPEG);
  if (!capture.isOpened()) {
    result.failure = input + (sequence ? ": no image of this sequence could be opened"
                                       : ": not a video OpenCV's FFmpeg can open (damaged, truncated before its "
                                         "index, or not a video)");
    return result;
  }
  const double stated_fps = capture.get(cv::CAP_PROP_FPS);
  result.fps = sequence || !(stated_fps > 0) || !std::isfinite(stated_fps) ? options.sequence_fps : stated_fps;
  // What the header promises: avi, mp4 and mov store the frame count, mkv and webm a duration
  // (count = duration x rate). Fewer frames decoded than this is a truncated or damaged video.
  const double stated_count = capture.get(cv::CAP_PROP_FRAME_COUNT);
  const int64_t expected = stated_count > 0 && std::isfinite(stated_count) ? std::llround(stated_count) : 0;

  BoundedQueue<DecodedFrame> decoded(options.queue_frames);
  BoundedQueue<DrawnFrame> to_draw(options.queue_frames);
  int64_t frames_read = 0;  // the reader's, read after it is joined

  Worker reader(
      [&] {
        for (int64_t index = 0;; ++index) {
          DecodedFrame frame;
          frame.index = index;
          if (!capture.read(frame.bgr) || frame.bgr.empty()) break;
          // The frame as a tensor here, beside the decoder, so the model thread only predicts.
          if (index % options.every == 0) {
            frame.rgb = data::image_rgb_from_bgr(frame.bgr, name + " frame " + std::to_string(index));
          }
          frames_read = index + 1;
          if (!decoded.push(std::move(frame))) break;
        }
      },
      [&] { decoded.close(); });

  // The writer opens once the first frame gives the size (a sequence's header has none).
  std::optional<Worker> writer_thread;
  cv::VideoWriter writer;
  const auto& class_names = predictor.class_names();
  auto start_writer = [&](int width, int height) {
    writer = open_writer(options.overlay_path, result.fps, width, height);
    writer_thread.emplace(
        [&] {
          torch::InferenceMode inference;  // pasting masks: no autograd bookkeeping
          while (auto frame = to_draw.pop()) {
            if (frame->prediction) {
              const ImagePrediction& p = *frame->prediction;
              draw_overlay(frame->bgr, p.detections, [&](int64_t k) { return p.masks->paste(k); }, class_names,
                           options.overlay);
            }
            writer.write(frame->bgr);
          }
        },
        [&] { to_draw.close(); });
  };

  ProgressBar progress(expected, "predict " + name, "frame");
  try {
    std::shared_ptr<const ImagePrediction> latest;
    int64_t passed = 0;
    while (auto frame = decoded.pop()) {
      if (passed == 0) {
        result.width = frame->bgr.cols;
        result.height = frame->bgr.rows;
        if (!options.overlay_path.empty()) start_writer(result.width, result.height);
      } else if (frame->bgr.cols != result.width || frame->bgr.rows != result.height) {
        // An image sequence of mixed sizes: a video has one.
        throw InputError(name + " frame " + std::to_string(frame->index) + ": " + std::to_string(frame->bgr.cols) +
                         "x" + std::to_string(frame->bgr.rows) + " pixels, but the first frame has " +
                         std::to_string(result.width) + "x" + std::to_string(result.height));
      }
      if (frame->rgb.defined()) {
        auto prediction = std::make_shared<ImagePrediction>(predictor.predict(frame->rgb, frame->index + 1));
        frame->rgb = torch::Tensor();
        on_line(video_frame_line(name, frame->index, static_cast<double>(frame->index) / result.fps,
                                 prediction->results));
        result.detections += static_cast<int64_t>(prediction->results.size());
        result.model_seconds.push_back(prediction->model_seconds);
        ++result.frames_predicted;
        latest = std::move(prediction);
      }
      ++passed;
      if (writer_thread && !to_draw.push(DrawnFrame{std::move(frame->bgr), latest})) break;  // the writer failed
      if (options.progress) progress.update(passed, std::to_string(result.frames_predicted) + " predicted");
    }
  } catch (...) {
    decoded.close();  // the reader stops at its next frame
    to_draw.close();
    reader.join();  // the error on its way out is the one to report
    if (writer_thread) writer_thread->join();
    throw;
  }
  to_draw.close();  // after the last frame: the writer drains the queue and ends
  decoded.close();
  if (const auto error = reader.error()) std::rethrow_exception(error);
  if (writer_thread) {
    if (const auto error = writer_thread->error()) std::rethrow_exception(error);
  }
  writer.release();
  if (options.progress) progress.finish(std::to_string(result.frames_predicted) + " predicted");

  result.frames_read = frames_read;
  if (frames_read == 0) {
    result.failure = name + ": no frame could be decoded" +
                     (expected > 0 ? " (its header states " + std::to_string(expected) + "; truncated or damaged)"
                                   : std::string());
  } else if (frames_read < expected) {
    result.failure = name + ": truncated or damaged, decoding stopped at frame " + std::to_string(frames_read) +
                     " of the " + std::to_string(expected) + " its header states; the " +
                     std::to_string(frames_read) + " frames before were predicted and written";
  }
  return result;
}

}  // namespace instseg
