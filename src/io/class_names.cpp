#include "instseg/io/class_names.h"

namespace instseg {

const std::vector<std::string>& coco_class_names() {
  static const std::vector<std::string> names = {
      "__background__", "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train",
      "truck", "boat", "traffic light", "fire hydrant", "N/A", "stop sign", "parking meter",
      "bench", "bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra",
      "giraffe", "N/A", "backpack", "umbrella", "N/A", "N/A", "handbag", "tie", "suitcase",
      "frisbee", "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove",
      "skateboard", "surfboard", "tennis racket", "bottle", "N/A", "wine glass", "cup", "fork",
      "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange", "broccoli", "carrot",
      "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant", "bed", "N/A",
      "dining table", "N/A", "N/A", "toilet", "N/A", "tv", "laptop", "mouse", "remote",
      "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "N/A",
      "book", "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush"};
  return names;
}

std::string class_name(const std::vector<std::string>& names, int64_t label) {
  if (label >= 0 && label < static_cast<int64_t>(names.size())) return names[label];
  return "class " + std::to_string(label);
}

}  // namespace instseg
