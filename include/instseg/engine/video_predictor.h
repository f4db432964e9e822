#pragma once
// Videos through a loaded model, frame by frame (`instseg predict --input clip.mp4`; docs/video.md):
// each predicted frame gives a line of predictions.jsonl and the frames are drawn into an annotated
// video of the same size and frame rate. Decoding, inference and drawing + encoding run in three
// threads joined by small bounded queues, so memory stays a few frames whatever the video's length.
// Frames go through data::image_rgb_from_bgr and ImagePredictor: a frame's results are those
// `predict` writes for the same picture saved as a PNG.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "instseg/coco/results.h"
#include "instseg/io/overlay.h"

namespace instseg {

class ImagePredictor;

// Inputs read as videos: files by extension (.mp4 .m4v .mov .avi .mkv .webm .mpg .mpeg .ts .wmv
// .flv .ogv, any case) and OpenCV image-sequence patterns, a printf field in the file name
// (frames/%04d.png: frames/0000.png, frames/0001.png, ...).
bool is_video_input(const std::string& path);
bool is_image_sequence(const std::string& path);

struct VideoPredictOptions {
  int every = 1;                 // predict frames 0, every, 2 * every, ...; >= 1
  // Frame rate of image sequences (their files carry none; OpenCV reports 1): the annotated
  // video's rate and the timestamps. Video files use their own.
  double sequence_fps = 25.0;
  std::string name;              // the video's name in predictions.jsonl and messages (default: input)
  // The annotated video to write ("" = none): .mp4 is written with the MPEG-4 Part 2 codec (fourcc
  // mp4v), .avi with Motion JPEG (MJPG); both ship with Debian's OpenCV + FFmpeg.
  std::string overlay_path;
  OverlayOptions overlay;        // how frames are drawn (scale must be 1)
  bool progress = true;          // a progress bar with frames/s on stderr
  int queue_frames = 4;          // frames held at most between two threads
};

struct VideoPredictResult {
  int64_t frames_read = 0;       // decoded (and written to the annotated video)
  int64_t frames_predicted = 0;  // lines given to on_line
  int64_t detections = 0;
  int width = 0, height = 0;
  double fps = 0.0;              // the annotated video's frame rate
  std::vector<double> model_seconds;  // per predicted frame
  // Empty, or why the video could not be read or stopped before its end; the frames read before
  // are predicted and written all the same.
  std::string failure;
};

// Predicts the frames of `input`. on_line receives each predicted frame's predictions.jsonl line
// (without the newline), in frame order. Errors that are not the video's (a model failure, the
// annotated video that cannot be written) throw.
VideoPredictResult predict_video(ImagePredictor& predictor, const std::string& input,
                                 const VideoPredictOptions& options,
                                 const std::function<void(const std::string& line)>& on_line);

// One line of predictions.jsonl:
//   {"file_name":"clip.mp4","frame":3,"time":0.12,"results":[{...},...]}
// frame counts from 0, time = frame / frame rate in seconds, results as predictions.json holds
// them (coco::ResultsWriter's entries, image_id = frame + 1, without file_name).
std::string video_frame_line(const std::string& video_name, int64_t frame, double seconds,
                             const std::vector<coco::Detection>& results);

}  // namespace instseg
