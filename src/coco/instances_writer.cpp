#include "instseg/coco/instances_writer.h"

#include "coco/json_writer.h"
#include "instseg/common/atomic_file.h"
#include "instseg/errors.h"

namespace instseg::coco {

using detail::append_integer;
using detail::append_number;

namespace {

void append_text(std::string& out, const std::string& text, const Dataset& dataset, const std::string& field) {
  if (!detail::append_string(out, text)) throw InputError(dataset.source() + ": " + field + ": not valid UTF-8");
}

void append_segmentation(std::string& out, const Segmentation& segmentation) {
  if (segmentation.kind == Segmentation::Kind::kRle) {
    // Uncompressed runs (an iscrowd annotation's) are written compressed: the same mask.
    out += "{\"counts\":";
    detail::append_string(out, to_string(segmentation.rle));  // '0'..'o': ASCII
    out += ",\"size\":[";
    append_integer(out, segmentation.rle.h);
    out += ',';
    append_integer(out, segmentation.rle.w);
    out += "]}";
    return;
  }
  out += '[';
  for (size_t p = 0; p < segmentation.polygons.size(); ++p) {
    if (p) out += ',';
    out += '[';
    for (size_t i = 0; i < segmentation.polygons[p].size(); ++i) {
      if (i) out += ',';
      append_number(out, segmentation.polygons[p][i]);
    }
    out += ']';
  }
  out += ']';
}

}  // namespace

std::string instances_json(const Dataset& dataset) {
  // Keys in sorted order within each object, as nlohmann::json (which wrote these files) sorts them.
  std::string out = "{\"annotations\":[";
  for (size_t i = 0; i < dataset.annotations().size(); ++i) {
    const Annotation& a = dataset.annotations()[i];
    if (i) out += ',';
    out += "{\"area\":";
    append_number(out, a.area);
    out += ",\"bbox\":[";
    for (size_t k = 0; k < 4; ++k) {
      if (k) out += ',';
      append_number(out, a.bbox[k]);
    }
    out += "],\"category_id\":";
    append_integer(out, a.category_id);
    out += ",\"id\":";
    append_integer(out, a.id);
    out += ",\"image_id\":";
    append_integer(out, a.image_id);
    out += ",\"iscrowd\":";
    out += a.iscrowd ? '1' : '0';
    if (a.segmentation.kind != Segmentation::Kind::kNone) {
      out += ",\"segmentation\":";
      append_segmentation(out, a.segmentation);
    }
    out += '}';
  }
  out += "],\"categories\":[";
  for (size_t i = 0; i < dataset.categories().size(); ++i) {
    const Category& c = dataset.categories()[i];
    if (i) out += ',';
    out += "{\"id\":";
    append_integer(out, c.id);
    out += ",\"name\":";
    append_text(out, c.name, dataset, "categories[" + std::to_string(i) + "].name");
    out += '}';
  }
  out += "],\"images\":[";
  for (size_t i = 0; i < dataset.images().size(); ++i) {
    const Image& image = dataset.images()[i];
    if (i) out += ',';
    out += "{\"file_name\":";
    append_text(out, image.file_name, dataset, "images[" + std::to_string(i) + "].file_name");
    out += ",\"height\":";
    append_integer(out, image.height);
    out += ",\"id\":";
    append_integer(out, image.id);
    out += ",\"width\":";
    append_integer(out, image.width);
    out += '}';
  }
  out += "]}\n";
  return out;
}

void write_instances(const std::string& path, const Dataset& dataset) {
  write_bytes_atomically(path, instances_json(dataset));
}

}  // namespace instseg::coco
