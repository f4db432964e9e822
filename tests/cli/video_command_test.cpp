// `instseg predict` on videos, run as a program: a short clip the test draws (shapes moving over a
// textured background, written with cv::VideoWriter) gives per-frame predictions equal to predict's
// on the decoded frames saved as PNGs, and an annotated video of every frame, the same size and
// rate; --every N predicts frames 0, N, 2N, ...; an image sequence is a video too; a truncated
// video keeps the frames read and is reported with the frame where it stopped (exit 1); an
// unreadable one is reported while the other inputs are predicted.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "cli_support.h"
#include "support/reference.h"

namespace instseg {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using ::testing::HasSubstr;
using testing::run_instseg;
using testing::TestDir;

constexpr int kFrames = 10, kWidth = 160, kHeight = 120;
constexpr double kFps = 10.0;

// r18.pth (tests/reference/interop_cli.py): a ResNet-18-FPN Mask R-CNN in torchvision's layout;
// what is checked here (frames, files, equality with image predictions) does not depend on the
// depth. Small frames at a small input size and at most 20 detections keep a frame well under a
// second on a loaded 2-core machine; one intra-op thread, as two OpenMP threads spin-wait for each
// other on shared cores (b15adb6), and the video's reader and writer threads get the other core.
std::vector<std::string> predict_args(const std::vector<std::string>& inputs, const std::string& out) {
  std::vector<std::string> args = {"predict",        "--weights", testing::reference_dir("interop_cli") + "/r18.pth",
                                   "--out",          out,         "--min-size",
                                   "128",            "--max-size", "160",
                                   "--threads",      "1",         "--detections-per-image",
                                   "20",             "--show-thresh", "0"};
  for (const auto& i : inputs) {
    args.push_back("--input");
    args.push_back(i);
  }
  return args;
}

// A picture with a fixed texture and, per frame, a disc, a box and a triangle moved a few pixels.
cv::Mat synthetic_frame(int index) {
  cv::Mat frame(kHeight, kWidth, CV_8UC3);
  cv::RNG rng(1234);  // the same background every frame
  rng.fill(frame, cv::RNG::UNIFORM, cv::Scalar(40, 70, 60), cv::Scalar(110, 140, 120));
  cv::GaussianBlur(frame, frame, cv::Size(5, 5), 0);
  cv::circle(frame, cv::Point(25 + 8 * index, 40), 18, cv::Scalar(30, 40, 220), cv::FILLED, cv::LINE_AA);
  cv::rectangle(frame, cv::Rect(110 - 6 * index, 60 + 2 * index, 40, 30), cv::Scalar(230, 200, 40), cv::FILLED);
  const std::vector<cv::Point> triangle = {{60, 110 - 3 * index}, {90, 110 - 3 * index}, {75, 80 - 3 * index}};
  cv::fillConvexPoly(frame, triangle, cv::Scalar(20, 220, 240), cv::LINE_AA);
  return frame;
}

void write_video(const std::string& path, const char* fourcc, int frames) {
  cv::VideoWriter writer(path, cv::CAP_FFMPEG, cv::VideoWriter::fourcc(fourcc[0], fourcc[1], fourcc[2], fourcc[3]),
                         kFps, cv::Size(kWidth, kHeight));
  ASSERT_TRUE(writer.isOpened()) << path << " " << fourcc;
  for (int i = 0; i < frames; ++i) writer.write(synthetic_frame(i));
}

// Every frame OpenCV's FFmpeg reader gives for `path`.
std::vector<cv::Mat> decode(const std::string& path) {
  cv::VideoCapture capture(path, cv::CAP_FFMPEG);
  std::vector<cv::Mat> frames;
  for (cv::Mat frame; capture.read(frame); frame = cv::Mat()) frames.push_back(frame);
  return frames;
}

// predictions.jsonl, a JSON value per line.
std::vector<json> read_lines(const std::string& path) {
  std::istringstream in(testing::read_file_bytes(path));
  std::vector<json> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(json::parse(line));
  return lines;
}

// Mean absolute difference of two pictures of one size, per channel value. An annotated frame of
// the clip differs from the decoded one by 30-42 with --show-thresh 0 (every detection tinted and
// boxed); undrawn, by the codec's re-encoding alone, 2.3-2.8.
constexpr double kDrawn = 10.0;
double mean_difference(const cv::Mat& a, const cv::Mat& b) {
  cv::Mat diff;
  cv::absdiff(a, b, diff);
  const cv::Scalar sum = cv::sum(diff);
  return (sum[0] + sum[1] + sum[2]) / (3.0 * a.total());
}

// One clip, its decoded frames as PNGs and predict's results on those PNGs, shared by the tests.
class VideoCommand : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fs::path(fs::temp_directory_path() / ("instseg_VideoCommand_" + std::to_string(::getpid())));
    fs::remove_all(*dir_);
    fs::create_directories(*dir_ / "frames");
    clip_ = new std::string((*dir_ / "clip.mp4").string());
    write_video(*clip_, "mp4v", kFrames);
    decoded_ = new std::vector<cv::Mat>(decode(*clip_));
    for (size_t i = 0; i < decoded_->size(); ++i) {
      char name[32];
      std::snprintf(name, sizeof name, "frames/%04zu.png", i);
      cv::imwrite((*dir_ / name).string(), (*decoded_)[i]);
    }
    // The frames as images: image ids 1, 2, ... in file order, so frame i is image i + 1.
    image_results_ = new std::map<int64_t, json>();
    const auto run = run_instseg(predict_args({(*dir_ / "frames").string()}, (*dir_ / "images").string()),
                                 dir_->string());
    image_run_exit_code_ = run.exit_code;
    if (run.exit_code != 0) {
      std::fprintf(stderr, "%s\n", run.err.c_str());
      return;
    }
    for (json e : json::parse(testing::read_file_bytes((*dir_ / "images/predictions.json").string()))) {
      e.erase("file_name");  // the video's entries have none: their line names the video
      (*image_results_)[e["image_id"].get<int64_t>() - 1].push_back(e);
    }
  }
  static void TearDownTestSuite() {
    fs::remove_all(*dir_);
    delete dir_;
    delete clip_;
    delete decoded_;
    delete image_results_;
  }
  void SetUp() override {
    ASSERT_EQ(decoded_->size(), static_cast<size_t>(kFrames)) << "the clip the test wrote does not decode";
    ASSERT_EQ(image_run_exit_code_, 0) << "predict on the decoded frames failed";
  }
  // The image predictions of frame i (an empty list when it had none).
  static json image_results(int64_t frame) {
    const auto it = image_results_->find(frame);
    return it == image_results_->end() ? json::array() : it->second;
  }
  // Checks predictions.jsonl's line for `frame` of `video` at `fps` against the frame's image predictions.
  static void expect_frame_line(const json& line, const std::string& video, int64_t frame, double fps) {
    EXPECT_EQ(line["file_name"], video);
    EXPECT_EQ(line["frame"].get<int64_t>(), frame);
    EXPECT_NEAR(line["time"].get<double>(), frame / fps, 1e-9) << "frame " << frame;
    EXPECT_EQ(line["results"], image_results(frame)) << "frame " << frame << " of " << video;
  }

  static fs::path* dir_;
  static std::string* clip_;
  static std::vector<cv::Mat>* decoded_;
  static std::map<int64_t, json>* image_results_;
  static int image_run_exit_code_;
};

fs::path* VideoCommand::dir_ = nullptr;
std::string* VideoCommand::clip_ = nullptr;
std::vector<cv::Mat>* VideoCommand::decoded_ = nullptr;
std::map<int64_t, json>* VideoCommand::image_results_ = nullptr;
int VideoCommand::image_run_exit_code_ = -1;

TEST_F(VideoCommand, FramePredictionsEqualImagePredictionsOfTheDecodedFrames) {
  TestDir dir;
  const auto run = run_instseg(predict_args({*clip_}, dir / "out"), dir.str());
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_TRUE(run.error_lines().empty()) << run.err;
  EXPECT_THAT(run.err, HasSubstr("frame/s")) << "no progress bar with frames per second";

  const auto lines = read_lines(dir / "out/predictions.jsonl");
  ASSERT_EQ(lines.size(), static_cast<size_t>(kFrames));
  size_t detections = 0;
  for (int i = 0; i < kFrames; ++i) {
    expect_frame_line(lines[i], "clip.mp4", i, kFps);
    detections += lines[i]["results"].size();
  }
  EXPECT_GT(detections, 0u) << "nothing detected: the comparison shows nothing";
  EXPECT_FALSE(fs::exists(dir / "out/predictions.json")) << "no image was given";

  // The annotated video: every frame, the same size and rate, and drawn on (with --show-thresh 0
  // every detection is tinted and boxed, far beyond the codec's own error of a value or two).
  const auto annotated = decode(dir / "out/clip.overlay.mp4");
  ASSERT_EQ(annotated.size(), static_cast<size_t>(kFrames));
  EXPECT_EQ(cv::VideoCapture(dir / "out/clip.overlay.mp4", cv::CAP_FFMPEG).get(cv::CAP_PROP_FPS), kFps);
  for (int i = 0; i < kFrames; ++i) {
    ASSERT_EQ(annotated[i].size(), cv::Size(kWidth, kHeight)) << "frame " << i;
    if (!lines[i]["results"].empty()) EXPECT_GT(mean_difference(annotated[i], (*decoded_)[i]), kDrawn) << "frame " << i;
  }
}

TEST_F(VideoCommand, EveryNthFrameIsPredictedAndEveryFrameDrawn) {
  TestDir dir;
  auto args = predict_args({*clip_}, dir / "out");
  args.insert(args.end(), {"--every", "3"});
  const auto run = run_instseg(args, dir.str());
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const auto lines = read_lines(dir / "out/predictions.jsonl");
  ASSERT_EQ(lines.size(), 4u);  // frames 0, 3, 6, 9
  for (size_t n = 0; n < lines.size(); ++n) expect_frame_line(lines[n], "clip.mp4", 3 * n, kFps);
  const auto annotated = decode(dir / "out/clip.overlay.mp4");
  ASSERT_EQ(annotated.size(), static_cast<size_t>(kFrames)) << "the annotated video keeps every frame";
  // Frames between predicted ones carry the latest predicted frame's detections.
  for (int i = 0; i < kFrames; ++i) {
    if (lines[i / 3]["results"].empty()) continue;
    EXPECT_GT(mean_difference(annotated[i], (*decoded_)[i]), kDrawn) << "frame " << i;
  }
}

TEST_F(VideoCommand, ImageSequencePatternIsAVideo) {
  TestDir dir;
  auto args = predict_args({(*dir_ / "frames/%04d.png").string()}, dir / "out");
  args.insert(args.end(), {"--every", "5", "--fps", "4", "--no-overlays"});
  const auto run = run_instseg(args, dir.str());
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const auto lines = read_lines(dir / "out/predictions.jsonl");
  ASSERT_EQ(lines.size(), 2u);  // frames 0 and 5
  expect_frame_line(lines[0], "frames/%04d.png", 0, 4.0);
  expect_frame_line(lines[1], "frames/%04d.png", 5, 4.0);
  EXPECT_FALSE(fs::exists(dir / "out/frames.overlay.mp4")) << "--no-overlays";
}

TEST_F(VideoCommand, TruncatedVideoKeepsTheFramesReadAndFails) {
  TestDir dir;
  // Motion JPEG in AVI: frames stand alone, so FFmpeg decodes a cut file up to the cut (a cut mp4
  // loses its index, written last, and does not open at all: the next test).
  const std::string cut = dir / "cut.avi";
  write_video(cut, "MJPG", kFrames);
  fs::resize_file(cut, fs::file_size(cut) * 6 / 10);
  const size_t readable = decode(cut).size();
  ASSERT_GT(readable, 0u);
  ASSERT_LT(readable, static_cast<size_t>(kFrames));

  const auto run = run_instseg(predict_args({cut}, dir / "out"), dir.str());
  EXPECT_EQ(run.exit_code, 1) << run.err;
  const auto errors = run.error_lines();
  ASSERT_EQ(errors.size(), 2u) << run.err;  // the video's, then "1 of 1 inputs could not be predicted"
  EXPECT_THAT(errors[0], HasSubstr("cut.avi"));
  EXPECT_THAT(errors[0], HasSubstr("stopped at frame " + std::to_string(readable) + " of the " +
                                   std::to_string(kFrames)));
  const auto lines = read_lines(dir / "out/predictions.jsonl");
  ASSERT_EQ(lines.size(), readable);
  for (size_t i = 0; i < readable; ++i) {
    EXPECT_EQ(lines[i]["file_name"], "cut.avi");
    EXPECT_EQ(lines[i]["frame"].get<size_t>(), i);
  }
  EXPECT_EQ(decode(dir / "out/cut.overlay.mp4").size(), readable);
}

TEST_F(VideoCommand, UnreadableVideoIsReportedAndTheOtherInputsPredicted) {
  TestDir dir;
  const std::string broken = dir / "broken.mp4";
  fs::copy_file(*clip_, broken);
  fs::resize_file(broken, fs::file_size(broken) / 2);  // the index (moov) is written last
  const std::string frame0 = (*dir_ / "frames/0000.png").string();
  const auto run = run_instseg(predict_args({broken, frame0}, dir / "out"), dir.str());
  EXPECT_EQ(run.exit_code, 1) << run.err;
  const auto errors = run.error_lines();
  ASSERT_EQ(errors.size(), 2u) << run.err;
  EXPECT_THAT(errors[0], HasSubstr("broken.mp4"));
  EXPECT_THAT(errors[1], HasSubstr("1 of 2 inputs"));
  EXPECT_TRUE(read_lines(dir / "out/predictions.jsonl").empty());
  EXPECT_FALSE(fs::exists(dir / "out/broken.overlay.mp4"));
  // The image beside it is predicted as ever.
  json predicted = json::array();
  for (json e : json::parse(testing::read_file_bytes(dir / "out/predictions.json"))) {
    e.erase("file_name");
    predicted.push_back(e);
  }
  EXPECT_EQ(predicted, image_results(0));
}

}  // namespace
}  // namespace instseg
