#include "serve/limits.h"

#include <cmath>
#include <cstdio>
#include <fstream>
#include <set>

#include "instseg/data/image_io.h"
#include "instseg/errors.h"

namespace instseg::serve {

namespace {

std::string trim(const std::string& s) {
  const auto first = s.find_first_not_of(" \t\r\n");
  if (first == std::string::npos) return "";
  return s.substr(first, s.find_last_not_of(" \t\r\n") - first + 1);
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

PredictQuery parse_predict_query(const std::multimap<std::string, std::string>& params) {
  PredictQuery q;
  std::set<std::string> seen;
  for (const auto& [name, value] : params) {
    if (!seen.insert(name).second) throw HttpError(400, "query parameter " + name + " given more than once");
    const std::string bad = "query parameter " + name + "=" + value + ": ";
    if (name == "score_thresh") {
      size_t used = 0;
      double x = 0;
      try {
        x = std::stod(value, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used == 0 || used != value.size() || !std::isfinite(x) || x < 0 || x > 1) {
        throw HttpError(400, bad + "must be a number in [0, 1]");
      }
      q.score_thresh = x;
    } else if (name == "mask_format") {
      if (value == "rle") {
        q.mask_format = MaskFormat::kRle;
      } else if (value == "polygon") {
        q.mask_format = MaskFormat::kPolygon;
      } else if (value == "none") {
        q.mask_format = MaskFormat::kNone;
      } else {
        throw HttpError(400, bad + "must be rle, polygon or none");
      }
    } else if (name == "max_detections") {
      size_t used = 0;
      long n = -1;
      try {
        n = std::stol(value, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used == 0 || used != value.size() || n < 0 || n > 100000) {
        throw HttpError(400, bad + "must be an integer in 0..100000");
      }
      q.max_detections = static_cast<int>(n);
    } else {
      throw HttpError(400, "unknown query parameter " + name + " (known: score_thresh, mask_format, max_detections)");
    }
  }
  return q;
}

const std::string& image_bytes(const std::string& content_type, const std::string& body,
                               const std::string* image_part, bool is_multipart) {
  const std::string type = lower(trim(content_type.substr(0, content_type.find(';'))));
  static const std::set<std::string> kImageTypes = {"image/jpeg", "image/png", "image/bmp", "image/webp",
                                                    "application/octet-stream"};
  const std::string* bytes = nullptr;
  if (is_multipart && type == "multipart/form-data") {
    if (!image_part) throw HttpError(400, "multipart/form-data body without a part named \"image\"");
    bytes = image_part;
  } else if (kImageTypes.count(type)) {
    bytes = &body;
  } else {
    throw HttpError(415, "unsupported Content-Type " + (type.empty() ? std::string("(none)") : "\"" + type + "\"") +
                             ": send image/jpeg, image/png, image/bmp, image/webp, application/octet-stream "
                             "or multipart/form-data with a part named \"image\"");
  }
  if (bytes->empty()) throw HttpError(400, "empty image (0 bytes)");
  return *bytes;
}

void check_image_pixels(const std::string& bytes, int64_t max_pixels) {
  const auto size = data::image_size_from_header(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size());
  if (!size) return;
  // In double: a TIFF header may declare sides of 2^32 - 1, whose product overflows int64 (and
  // wrapped to a negative number, let the picture through to the decoder).
  const double pixels = static_cast<double>(size->width) * static_cast<double>(size->height);
  if (pixels > static_cast<double>(max_pixels)) {
    char count[32];
    std::snprintf(count, sizeof count, "%.0f", pixels);
    throw HttpError(413, "image of " + std::to_string(size->width) + " x " + std::to_string(size->height) + " = " +
                             count + " pixels is over --max-image-pixels " + std::to_string(max_pixels));
  }
}

std::string read_token_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw ConfigError("--token-file " + path + ": cannot be read");
  std::string line;
  std::getline(in, line);
  const std::string token = trim(line);
  if (token.empty()) throw ConfigError("--token-file " + path + ": the first line (the token) is empty");
  return token;
}

void check_bearer_token(const std::string& authorization, const std::string& token) {
  const std::string prefix = "Bearer ";
  if (authorization.empty()) throw HttpError(401, "missing Authorization: Bearer <token> (the server has --token-file)");
  const std::string given = authorization.rfind(prefix, 0) == 0 ? authorization.substr(prefix.size()) : "";
  // Every byte of the longer string is visited whatever matches, so the time says nothing of the token.
  const size_t n = std::max(given.size(), token.size());
  unsigned diff = given.size() == token.size() ? 0u : 1u;
  for (size_t i = 0; i < n; ++i) {
    const unsigned char a = i < given.size() ? given[i] : 0, b = i < token.size() ? token[i] : 0;
    diff |= static_cast<unsigned>(a ^ b);
  }
  if (diff != 0) throw HttpError(401, "wrong bearer token in Authorization");
}

}  // namespace instseg::serve
