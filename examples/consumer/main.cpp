// Loads a Mask R-CNN, predicts one picture and prints its detections as COCO results JSON (the
// entries `instseg predict` writes to predictions.json), then a line per detection on stderr.
//   instseg_consumer WEIGHTS IMAGE [MIN_SIZE MAX_SIZE [THREADS]]
#include <instseg/instseg.h>

#include <opencv2/imgcodecs.hpp>

#include <filesystem>
#include <iostream>
#include <string>

int main(int argc, char** argv) {
  if (argc != 3 && argc != 5 && argc != 6) {
    std::cerr << "usage: " << argv[0] << " WEIGHTS IMAGE [MIN_SIZE MAX_SIZE [THREADS]]\n";
    return 2;
  }
  try {
    instseg::ModelOptions options;
    if (argc >= 5) {
      options.min_size = std::stoi(argv[3]);
      options.max_size = std::stoi(argv[4]);
    }
    if (argc == 6) options.threads = std::stoi(argv[5]);
    const instseg::Model model = instseg::Model::load(argv[1], options);

    const cv::Mat picture = cv::imread(argv[2], cv::IMREAD_COLOR);
    if (picture.empty()) {
      std::cerr << "error: " << argv[2] << ": not a readable image\n";
      return 1;
    }
    instseg::ImageDetections image;
    image.file_name = std::filesystem::path(argv[2]).filename().string();
    image.detections = model.predict(picture);
    std::cout << instseg::to_coco_results_json({image});

    const instseg::ModelInfo info = model.info();
    std::cerr << info.architecture << ", " << info.num_classes - 1 << " categories: " << image.detections.size()
              << " detections\n";
    for (const instseg::Detection& d : image.detections) {
      std::cerr << "  " << d.category_name << " " << d.score << " box [" << d.box[0] << ", " << d.box[1] << ", "
                << d.box[2] << ", " << d.box[3] << "] mask " << d.mask.area() << " px\n";
    }
  } catch (const std::exception& e) {  // instseg's errors name the file and the field
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
