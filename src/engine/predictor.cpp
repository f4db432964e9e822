#include "instseg/engine/predictor.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <thread>

#include "instseg/common/atomic_file.h"
#include "instseg/common/progress_bar.h"
#include "instseg/common/stage_profile.h"
#include "instseg/data/image_io.h"
#include "instseg/distributed/communicator.h"
#include "instseg/engine/image_predictor.h"
#include "instseg/engine/inference.h"
#include "instseg/engine/model_factory.h"
#include "instseg/engine/stage_flops.h"
#include "instseg/engine/video_predictor.h"
#include "instseg/coco/dataset.h"
#include "instseg/coco/results_writer.h"
#include "instseg/errors.h"
#include "instseg/io/class_names.h"
#include "instseg/io/overlay.h"
#include "instseg/ops/fused_conv.h"
#include "instseg/ops/mixed_precision.h"

namespace instseg {

namespace fs = std::filesystem;

void PredictOptions::validate() const {
  if (weights.empty()) throw ConfigError("predict: --weights is required");
  if (inputs.empty()) throw ConfigError("predict: --input is required");
  if (out_dir.empty()) throw ConfigError("predict: --out is required");
  if (!(score_thresh <= 1.0) || (score_thresh < 0.0 && score_thresh != -1.0)) {
    throw ConfigError("predict: --score-thresh must be in [0, 1], got " + std::to_string(score_thresh));
  }
  if (detections_per_image < 0) throw ConfigError("predict: --detections-per-image must be >= 0 (0 = the model's)");
  if (min_size < 0 || max_size < 0 || (min_size > 0 && max_size > 0 && max_size < min_size)) {
    throw ConfigError("predict: need 0 < --min-size <= --max-size (0 = automatic), got " + std::to_string(min_size) +
                      " and " + std::to_string(max_size));
  }
  if (threads < 0) throw ConfigError("predict: --threads must be >= 0");
  if (max_image_pixels < 1 || max_image_pixels > data::kMaxImagePixelsCeiling) {
    throw ConfigError("predict: --max-image-pixels must be in [1, " + std::to_string(data::kMaxImagePixelsCeiling) +
                      "] (OpenCV decodes no more), got " + std::to_string(max_image_pixels));
  }
  if (!mask_paste.empty()) mask_paste_named(mask_paste, "predict: --mask-paste");
  if (every < 1) throw ConfigError("predict: --every must be >= 1, got " + std::to_string(every));
  if (!(fps > 0) || !std::isfinite(fps)) throw ConfigError("predict: --fps must be > 0, got " + std::to_string(fps));
  const auto arithmetic = ops::inference_precision_named(precision, "predict: --precision");
  if (!fused && arithmetic != ops::InferencePrecision::kFloat32) {
    throw ConfigError("predict: --unfused runs the stages' module code in fp32; --precision " + precision +
                      " needs the fused path (drop --unfused)");
  }
  if (batch < 1 || batch > 64) throw ConfigError("predict: --batch must be in [1, 64], got " + std::to_string(batch));
}

namespace {

bool is_image_file(const fs::path& path) {
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  static const char* const kExtensions[] = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"};
  return std::any_of(std::begin(kExtensions), std::end(kExtensions), [&](const char* e) { return ext == e; });
}

double median(std::vector<double> values) {
  if (values.empty()) return 0.0;
  std::sort(values.begin(), values.end());
  const size_t mid = values.size() / 2;
  return values.size() % 2 ? values[mid] : 0.5 * (values[mid - 1] + values[mid]);
}

// Command-line settings over the model's own description (a run's config.json: a model is only
// good at the scale it was trained at, and pastes masks as it was validated).
ModelOverrides overrides_for(const PredictOptions& options) {
  ModelOverrides overrides = overrides_from(options.score_thresh, options.detections_per_image, options.mask_paste,
                                            options.min_size, options.max_size, "predict: --mask-paste");
  overrides.fused = options.fused;
  overrides.precision = ops::inference_precision_named(options.precision, "predict: --precision");
  return overrides;
}

// How the model computes, as print_settings and the profile name it: "fp32", "bf16", "fp32 (unfused)".
std::string arithmetic_name(const PredictOptions& options) {
  return options.fused ? options.precision : options.precision + " (unfused)";
}

// One line a user can check against what they expect: where the model came from and how it runs.
void print_settings(const LoadedModel& loaded, const PredictOptions& options, bool to_terminal) {
  if (!to_terminal) return;
  const MaskRcnnOptions& o = loaded.model->options();
  std::string sizes;
  for (const int64_t s : o.transform.min_size) sizes += (sizes.empty() ? "" : ",") + std::to_string(s);
  std::fprintf(stderr,
               "predict: %s (described by %s): %d classes, ResNet-%d, input %s/%lld px, score > %g, "
               "%lld detections, RPN top %lld, mask paste %s, %s\n",
               loaded.weights.c_str(), loaded.config_file.empty() ? "its tensors" : loaded.config_file.c_str(),
               o.num_classes, o.backbone.depth, sizes.c_str(), static_cast<long long>(o.transform.max_size),
               o.roi_heads.score_thresh, static_cast<long long>(o.roi_heads.detections_per_img),
               static_cast<long long>(o.rpn.post_nms_top_n_test),
               o.mask_paste == MaskPaste::kAligned ? "aligned" : "torchvision", arithmetic_name(options).c_str());
}

// What a run wrote, removed again if it fails half-way (an error that is not one image's), so
// that no output folder is left half-written: predictions.json, written last, marks a finished run.
class RunOutputs {
 public:
  explicit RunOutputs(fs::path dir) : dir_(std::move(dir)) {}
  RunOutputs(const RunOutputs&) = delete;
  RunOutputs& operator=(const RunOutputs&) = delete;
  ~RunOutputs() {
    if (finished_) return;
    std::error_code ec;  // best effort while an exception is on its way out
    for (const auto& file : written_) fs::remove(file, ec);
    if (created_dir_) fs::remove(dir_, ec);  // only if empty: someone else's files stay
  }
  // The path of `name` in the output folder, made when the run first writes into it.
  std::string path(const std::string& name) {
    if (!dir_ready_) {
      std::error_code ec;
      created_dir_ = !fs::is_directory(dir_, ec);
      fs::create_directories(dir_);
      dir_ready_ = true;
    }
    return (dir_ / name).string();
  }
  void wrote(const std::string& path) { written_.push_back(path); }
  void finish() { finished_ = true; }

 private:
  fs::path dir_;
  bool dir_ready_ = false, created_dir_ = false, finished_ = false;
  std::vector<std::string> written_;
};

// An allocation that failed while predicting one image (a picture allowed by a raised
// --max-image-pixels but too large for the machine): that image's failure, not the run's.
std::string out_of_memory(const std::string& path) {
  return path + ": out of memory while predicting this image (lower --max-image-pixels to refuse such images)";
}

// A video's name in predictions.jsonl and its annotated video's file name.
struct VideoOutput {
  std::string name, overlay;
};

// The file name ("clip.mp4"), or a sequence's folder and pattern ("frames/%04d.png"); the annotated
// video is "<stem>.overlay.mp4" (a sequence's stem is its folder's name), "<file name>.overlay.mp4"
// for videos whose stems coincide. Names that would still collide are refused, as overlay_names does.
std::vector<VideoOutput> video_outputs(const std::vector<std::string>& inputs) {
  std::vector<VideoOutput> outputs;
  std::map<std::string, int> stem_count;
  std::vector<std::string> stems;
  for (const auto& input : inputs) {
    const fs::path p(input);
    const bool sequence = is_image_sequence(input);
    const std::string folder = p.parent_path().filename().string();
    const std::string stem = sequence ? (folder.empty() || folder == "." ? "frames" : folder) : p.stem().string();
    stems.push_back(stem);
    ++stem_count[stem];
    outputs.push_back({sequence && !folder.empty() ? folder + "/" + p.filename().string() : p.filename().string(), ""});
  }
  std::map<std::string, std::string> input_of_name, input_of_overlay;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const bool renamed = stem_count[stems[i]] > 1 && !is_image_sequence(inputs[i]);
    outputs[i].overlay = (renamed ? fs::path(inputs[i]).filename().string() : stems[i]) + ".overlay.mp4";
    for (auto [map, key] :
         {std::pair{&input_of_name, outputs[i].name}, std::pair{&input_of_overlay, outputs[i].overlay}}) {
      const auto [it, inserted] = map->emplace(key, inputs[i]);
      if (!inserted) {
        throw InputError("predict: " + it->second + " and " + inputs[i] + " would both be named " + key +
                         " in the output: predict them in separate runs (another --out)");
      }
    }
  }
  return outputs;
}

}  // namespace

std::vector<std::string> overlay_names(const std::vector<std::string>& image_paths) {
  std::map<std::string, std::string> path_of_file;  // file name -> the path that had it first
  std::map<std::string, int> stem_count;
  for (const auto& path : image_paths) {
    const fs::path p(path);
    const auto [it, inserted] = path_of_file.emplace(p.filename().string(), path);
    if (!inserted) {
      throw InputError(it->second == path
                           ? "predict: " + path + " is given twice"
                           : "predict: " + it->second + " and " + path + " have the same file name " +
                                 p.filename().string() +
                                 ", which names their predictions and overlays: predict them in separate runs "
                                 "(another --out)");
    }
    ++stem_count[p.stem().string()];
  }
  std::vector<std::string> names;
  std::map<std::string, std::string> path_of_name;
  for (const auto& path : image_paths) {
    const fs::path p(path);
    const std::string stem = p.stem().string();
    names.push_back((stem_count[stem] > 1 ? p.filename().string() : stem) + ".overlay.jpg");
    // Only contrived names remain (x.jpg beside x.jpg.png): refuse rather than overwrite.
    const auto [it, inserted] = path_of_name.emplace(names.back(), path);
    if (!inserted) {
      throw InputError("predict: " + it->second + " and " + path + " would both draw " + names.back() +
                       ": predict them in separate runs (another --out)");
    }
  }
  return names;
}

std::vector<std::string> collect_image_paths(const std::vector<std::string>& inputs) {
  std::vector<std::string> paths;
  for (const auto& input : inputs) {
    const fs::path path(input);
    std::error_code ec;
    if (fs::is_directory(path, ec)) {
      std::vector<std::string> found;
      for (const auto& entry : fs::directory_iterator(path)) {
        if (entry.is_regular_file() && is_image_file(entry.path())) found.push_back(entry.path().string());
      }
      std::sort(found.begin(), found.end());
      if (found.empty()) throw InputError(input + ": folder holds no image files (.jpg, .png, ...)");
      paths.insert(paths.end(), found.begin(), found.end());
    } else if (fs::exists(path, ec)) {
      paths.push_back(input);
    } else {
      throw InputError(input + ": no such file or folder");
    }
  }
  return paths;
}

PredictSummary run_predict(const PredictOptions& options) {
  options.validate();
  torch::set_num_threads(options.threads > 0 ? options.threads
                                             : static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  // Videos and image sequences go frame by frame; the rest are images and folders of images.
  std::vector<std::string> image_inputs, video_inputs;
  for (const auto& input : options.inputs) (is_video_input(input) ? video_inputs : image_inputs).push_back(input);
  const auto image_paths = collect_image_paths(image_inputs);
  const auto overlay_files = overlay_names(image_paths);
  const auto videos = video_outputs(video_inputs);

  const LoadedModel loaded = load_model(options.weights, overrides_for(options));
  MaskRcnn model = loaded.model;
  const auto& transform = model->options().transform;
  if ((options.min_size > 0 || options.max_size > 0) && transform.max_size < transform.min_size.back()) {
    throw ConfigError("predict: --max-size " + std::to_string(transform.max_size) + " is below the input size " +
                      std::to_string(transform.min_size.back()));
  }
  // One process is a job of one rank: the same code, collectives that return at once.
  const std::unique_ptr<dist::Communicator> one_process = options.communicator ? nullptr : dist::single_process();
  dist::Communicator& comm = options.communicator ? *options.communicator : *one_process;
  const bool main_rank = comm.is_main();
  if (!videos.empty() && comm.world_size() > 1) {
    // A video is one stream decoded in order; its frames are not shared between processes.
    throw ConfigError("predict: videos (" + video_inputs.front() +
                      ") are predicted by one process: run predict on them without torchrun or srun");
  }
  print_settings(loaded, options, options.progress && main_rank);
  if (options.precision == "bf16" && !ops::cpu_has_native_bf16() && main_rank) {
    std::fprintf(stderr,
                 "predict: warning: this CPU has no AVX512-BF16; oneDNN emulates bf16, slower than fp32 "
                 "(--precision fp32 is the faster choice here)\n");
  }

  std::map<std::string, int64_t> image_ids;  // file name -> COCO image id
  if (!options.coco_gt.empty()) image_ids = coco::image_ids_by_file_name(coco::Dataset::load(options.coco_gt));

  // A model trained by instseg carries its classes in categories.json beside the weights;
  // torchvision's COCO models use COCO's ids as labels.
  const std::optional<data::CategoryMap>& categories = loaded.categories;
  const auto names = categories ? categories->class_names() : coco_class_names();

  RunOutputs outputs(options.out_dir);
  OverlayOptions overlay_options;
  overlay_options.show_thresh = options.show_thresh;
  data::ImageReadOptions read_options;
  read_options.max_pixels = options.max_image_pixels;

  PredictSummary summary;
  std::vector<double> model_seconds;
  // --profile: this rank's stage times and the arithmetic of its images (engine/stage_flops.h).
  StageProfile stage_seconds;
  StageFlops stage_arithmetic;
  double profiled_seconds = 0.0, profiled_proposals = 0.0;
  int64_t profiled_images = 0;
  if (!image_paths.empty()) {
    const int64_t count = static_cast<int64_t>(image_paths.size());
    const int rank = comm.rank(), world = comm.world_size();
    std::vector<ImageResults> mine;  // this rank's images (i % world == rank), in input order
    // The main rank's bar counts its own share: the ranks run at about the same pace.
    ProgressBar progress(rank < count ? (count - rank + world - 1) / world : 0, "predict", "img");
    const bool show_progress = main_rank && options.progress && count > 1;
    InferenceOptions inference_options;
    if (categories) inference_options.categories = &*categories;
    inference_options.rank = rank;
    inference_options.world_size = world;
    inference_options.batch = options.batch;
    if (options.profile) inference_options.profile = &stage_seconds;
    // One image's failure (unreadable, too large for the memory) is reported and the others go on.
    inference_options.on_failure = [&](const InferenceFailure& failure) {
      const std::string& path = image_paths[failure.index];
      const std::string message = failure.out_of_memory ? out_of_memory(path) : failure.message;
      mine.push_back(ImageResults{failure.index, fs::path(path).filename().string(), {}, message, 0.0});
      // In a job the line names its rank, as the program's own errors do (apps/main.cpp).
      std::cerr << "\nerror: " << (world > 1 ? "rank " + std::to_string(rank) + ": " : "") << message << "\n";
      if (show_progress) progress.update(static_cast<int64_t>(mine.size()));
    };
    auto image_at = [&](int64_t i) {
      const std::string& path = image_paths[i];
      InferenceInput input;
      input.file_name = fs::path(path).filename().string();
      input.image = data::read_image_rgb(path, read_options);
      input.image_id = i + 1;
      if (!options.coco_gt.empty()) {
        const auto it = image_ids.find(input.file_name);
        if (it == image_ids.end()) throw InputError(path + ": file name not found in " + options.coco_gt);
        input.image_id = it->second;
      }
      return input;
    };
    auto on_image = [&](const ImageInference& inferred) {
      if (options.profile) {
        const MaskRcnnOptions& o = model->options();
        const auto input_size = padded_input_size(o, inferred.input.image.size(1), inferred.input.image.size(2));
        // The most the RPN can hand the box head; rescaled to the counted rows after the run.
        const int64_t proposals = max_proposals(o, input_size);
        stage_arithmetic.add(stage_flops(o, input_size, proposals, inferred.detections.scores.size(0), options.fused));
        profiled_proposals += static_cast<double>(proposals);
        profiled_seconds += inferred.model_seconds;
        ++profiled_images;
      }
      if (options.overlays) {
        const std::string overlay = outputs.path(overlay_files[inferred.index]);
        write_bytes_atomically(overlay, render_overlay(inferred.input.image, inferred.detections,
                                                       [&](int64_t k) { return inferred.masks.paste(k); }, names,
                                                       overlay_options, ".jpg"));
        outputs.wrote(overlay);
      }
      mine.push_back(
          ImageResults{inferred.index, inferred.input.file_name, inferred.results, "", inferred.model_seconds});
      if (show_progress) progress.update(static_cast<int64_t>(mine.size()));
    };
    {
      torch::InferenceMode inference;  // no autograd bookkeeping at all: predict never trains
      inference_on_dataset(*model, count, image_at, on_image, inference_options);
    }
    if (show_progress) progress.finish();

    // Every rank's images, in input order: each rank's summary is the job's, and the main rank's
    // predictions.json is the file one process writes, whatever the number of ranks.
    coco::ResultsWriter results;
    for (const ImageResults& image : gather_image_results(comm, std::move(mine))) {
      if (!image.failure.empty()) {
        summary.failures.push_back(image.failure);
        continue;
      }
      if (main_rank) results.add(image.detections, image.file_name);
      summary.detections += static_cast<int>(image.detections.size());
      ++summary.images_done;
      model_seconds.push_back(image.model_seconds);
    }
    if (main_rank) write_bytes_atomically(outputs.path("predictions.json"), results.dump());
    // The overlays stay only once predictions.json exists: a rank whose partners failed removes its own.
    comm.barrier();
  }  // images

  if (!videos.empty()) {
    ImagePredictor predictor(loaded);
    // Streamed, a line per predicted frame (a long video's results are not held in memory), and
    // renamed into place once every video is done, as predictions.json is written at once.
    const std::string jsonl_part = outputs.path("predictions.jsonl.part");
    outputs.wrote(jsonl_part);
    std::ofstream jsonl(jsonl_part, std::ios::binary | std::ios::trunc);
    if (!jsonl) throw InputError(jsonl_part + ": cannot write");
    for (size_t v = 0; v < videos.size(); ++v) {
      VideoPredictOptions video_options;
      video_options.every = options.every;
      video_options.sequence_fps = options.fps;
      video_options.name = videos[v].name;
      video_options.overlay = overlay_options;
      video_options.progress = options.progress;
      if (options.overlays) {
        video_options.overlay_path = outputs.path(videos[v].overlay);
        outputs.wrote(video_options.overlay_path);
      }
      const VideoPredictResult video =
          predict_video(predictor, video_inputs[v], video_options, [&](const std::string& line) {
            jsonl << line << '\n';
            jsonl.flush();  // each finished frame in the file as it comes (tail -f), whatever happens next
          });
      if (!jsonl) throw InputError(jsonl_part + ": cannot write (disk full?)");
      if (video.failure.empty()) {
        ++summary.videos_done;
      } else {
        summary.failures.push_back(video.failure);
        std::cerr << "\nerror: " << video.failure << "\n";
      }
      summary.video_frames += video.frames_predicted;
      summary.detections += static_cast<int>(video.detections);
      model_seconds.insert(model_seconds.end(), video.model_seconds.begin(), video.model_seconds.end());
    }
    jsonl.close();
    if (!jsonl) throw InputError(jsonl_part + ": cannot write (disk full?)");
    const std::string jsonl_path = outputs.path("predictions.jsonl");
    fs::rename(jsonl_part, jsonl_path);
    outputs.wrote(jsonl_path);
  }
  if (options.profile && profiled_images > 0 && main_rank) {
    // The main rank's images (the ranks run at about the same pace). The peak is measured after
    // the run, on the same threads, so that it competes with nothing of predict's.
    const double peak = measured_conv_peak_gflops(overrides_for(options).precision);
    ProfileReport report = ProfileReport::make(stage_seconds, stage_arithmetic, profiled_images, profiled_seconds,
                                               peak, arithmetic_name(options), cpu_model());
    report.proposals_per_image = profiled_proposals / static_cast<double>(profiled_images);
    // The RPN counts what it handed the box head (the model thread's profile, read after the run):
    // box.head's FLOP scale with those rows, whatever the image size.
    const int64_t counted = stage_seconds.count_of("proposals");
    if (counted > 0 && profiled_proposals > 0) {
      const double scale = static_cast<double>(counted) / profiled_proposals;
      for (auto& row : report.rows) {
        if (row.stage != "box.head") continue;
        row.gflop_per_image *= scale;
        row.gflops *= scale;
        row.peak_share *= scale;
        report.gflop_per_image += row.gflop_per_image - row.gflop_per_image / scale;
      }
      report.proposals_per_image = static_cast<double>(counted) / static_cast<double>(profiled_images);
      report.proposals_counted = true;
    }
    const std::string profile_path = outputs.path("profile.json");
    write_bytes_atomically(profile_path, report.json());
    outputs.wrote(profile_path);
    std::cout << report.table() << std::flush;
  }
  outputs.finish();
  summary.seconds_per_image = median(model_seconds);
  return summary;
}

}  // namespace instseg
