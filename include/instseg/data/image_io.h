#pragma once
// Reading and writing image files as tensors. Every failure is an InputError naming the file, e.g.
// "images/0003.jpg: not a decodable image (0 bytes)".
#include <torch/types.h>

#include <string>

namespace instseg::data {

// Reads a JPEG/PNG/... file as [3, H, W] float RGB in [0, 1] (8-bit values / 255, 16-bit values /
// 65535). Grayscale is repeated into 3 channels; an alpha channel is dropped. EXIF orientation is
// not applied, like PIL (and therefore like COCO's annotations and torchvision's reference).
// Truncated JPEG and PNG files are rejected instead of being decoded partially.
torch::Tensor read_image_rgb(const std::string& path);

// Reads a single-channel 8- or 16-bit image (an instance-id mask PNG) as [H, W] int64 values.
torch::Tensor read_label_image(const std::string& path);

// Writes [3, H, W] float RGB in [0, 1] (rounded to 8 bits) as a PNG, atomically.
void write_image_png(const std::string& path, const torch::Tensor& image);

// Writes [H, W] integer ids (0..65535) as a single-channel PNG, 8-bit when every id fits, else
// 16-bit, atomically.
void write_label_png(const std::string& path, const torch::Tensor& ids);

}  // namespace instseg::data
