// log.jsonl (train_loop.h): appended one record per line and flushed, so a killed run keeps every
// record written; its byte count lets a checkpoint record how much of the log it covers.
#include <filesystem>

#include "instseg/errors.h"
#include "engine/train_loop.h"

namespace instseg::training {

namespace fs = std::filesystem;

JsonLinesLog::JsonLinesLog(const std::string& path, bool resume, int64_t keep_bytes) : path_(path) {
  std::error_code ec;
  if (resume && fs::exists(path)) {
    const auto size = static_cast<int64_t>(fs::file_size(path, ec));
    if (!ec && keep_bytes >= 0 && size > keep_bytes) fs::resize_file(path, static_cast<uintmax_t>(keep_bytes), ec);
    if (ec) throw InputError(path + ": cannot cut the log back to the checkpoint: " + ec.message());
    bytes_ = static_cast<int64_t>(fs::file_size(path));
  }
  out_.open(path, std::ios::binary | (resume ? std::ios::app : std::ios::trunc));
  if (!out_) throw InputError(path + ": cannot open log for writing");
}

void JsonLinesLog::write(const std::string& json_object) {
  const std::string line = json_object + "\n";
  out_ << line;
  out_.flush();
  if (!out_) throw InputError(path_ + ": write failed (disk full?)");
  bytes_ += static_cast<int64_t>(line.size());
}

}  // namespace instseg::training
