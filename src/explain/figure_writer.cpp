#include "figure_writer.h"

#include <opencv2/imgcodecs.hpp>

#include <filesystem>
#include <iostream>

#include "instseg/common/atomic_file.h"
#include "instseg/errors.h"

namespace instseg::explain {

namespace fs = std::filesystem;

FigureWriter::FigureWriter(std::string out_dir, std::string format, bool progress)
    : out_dir_(std::move(out_dir)), format_(std::move(format)), progress_(progress) {}

void FigureWriter::write(const std::string& name, const cv::Mat& picture, const nlohmann::json& numbers,
                         const std::string& caption) {
  const fs::path picture_path = fs::path(out_dir_) / (name + "." + format_);
  const fs::path json_path = fs::path(out_dir_) / (name + ".json");
  std::error_code ec;
  fs::create_directories(picture_path.parent_path(), ec);
  if (ec) throw InputError(picture_path.parent_path().string() + ": cannot create the folder: " + ec.message());
  std::vector<uchar> encoded;
  const std::vector<int> params = format_ == "jpg" ? std::vector<int>{cv::IMWRITE_JPEG_QUALITY, 90} : std::vector<int>{};
  if (picture.empty() || !cv::imencode("." + format_, picture, encoded, params)) {
    throw InputError(picture_path.string() + ": cannot encode the picture");
  }
  ExplainFigure figure{name + "." + format_, name + ".json", caption};
  nlohmann::json document = {{"caption", caption}, {"picture", fs::path(figure.picture).filename().string()}};
  document.update(numbers);
  write_bytes_atomically(picture_path.string(), std::string(encoded.begin(), encoded.end()));
  write_bytes_atomically(json_path.string(), document.dump(1) + "\n");
  figures_.push_back(figure);
  if (progress_) std::cerr << "explain: " << figure.picture << ": " << caption << "\n";
}

void FigureWriter::write_index() const {
  nlohmann::json list = nlohmann::json::array();
  for (const auto& f : figures_) list.push_back({{"picture", f.picture}, {"numbers", f.numbers}, {"caption", f.caption}});
  write_bytes_atomically((fs::path(out_dir_) / "index.json").string(), nlohmann::json{{"figures", list}}.dump(1) + "\n");
}

}  // namespace instseg::explain
