#include "instseg/coco/results_writer.h"

#include "coco/json_writer.h"
#include "instseg/common/atomic_file.h"
#include "instseg/errors.h"

namespace instseg::coco {

void ResultsWriter::add(const std::vector<Detection>& detections, std::string_view file_name) {
  // The name once, checked and escaped, for every entry of the image.
  std::string name;
  if (!file_name.empty() && !detail::append_string(name, file_name)) {
    throw InputError("results: file_name " + std::string(file_name) + ": not valid UTF-8");
  }
  for (const Detection& d : detections) {
    if (count_++) entries_ += ",\n";
    // Keys in sorted order, as nlohmann::json (which wrote these files before) sorts them.
    entries_ += '{';
    if (d.has_bbox) {
      entries_ += "\"bbox\":[";
      for (size_t k = 0; k < 4; ++k) {
        if (k) entries_ += ',';
        detail::append_number(entries_, d.bbox[k]);
      }
      entries_ += "],";
    }
    entries_ += "\"category_id\":";
    detail::append_integer(entries_, d.category_id);
    if (!name.empty()) {
      entries_ += ",\"file_name\":";
      entries_ += name;
    }
    entries_ += ",\"image_id\":";
    detail::append_integer(entries_, d.image_id);
    entries_ += ",\"score\":";
    detail::append_number(entries_, d.score);
    if (d.mask) {
      entries_ += ",\"segmentation\":{\"counts\":";
      detail::append_string(entries_, to_string(*d.mask));  // '0'..'o': ASCII, '\\' escaped
      entries_ += ",\"size\":[";
      detail::append_integer(entries_, d.mask->h);
      entries_ += ',';
      detail::append_integer(entries_, d.mask->w);
      entries_ += "]}";
    }
    entries_ += '}';
  }
}

std::string ResultsWriter::dump() const {
  if (count_ == 0) return "[]\n";
  std::string out;
  out.reserve(entries_.size() + 6);
  out += "[\n";
  out += entries_;
  out += "\n]\n";
  return out;
}

void ResultsWriter::write(const std::string& path) const { write_bytes_atomically(path, dump()); }

void write_results(const std::string& path, const std::vector<Detection>& detections) {
  ResultsWriter writer;
  writer.add(detections);
  writer.write(path);
}

}  // namespace instseg::coco
