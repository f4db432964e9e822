// .pth files (include/instseg/checkpoint/state_dict.h): zip archives and the legacy format, read
// in memory by the reader's own entry (src/checkpoint/reader.h; read_state_dict and read_archive
// are it plus reading the file), as a state dict and as a training-state archive.
// Documented refusal: CheckpointError.
#include <torch/torch.h>

#include <cstdint>
#include <string>

#include "checkpoint/reader.h"
#include "fuzz_util.h"
#include "instseg/errors.h"

namespace ckpt = instseg::checkpoint_detail;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  ckpt::Unpickled unpickled;
  try {
    unpickled = ckpt::unpickle_bytes(bytes, "fuzz.pth");
  } catch (const instseg::CheckpointError&) {
    return 0;
  }
  try {
    for (const auto& [name, tensor] : ckpt::to_state_dict(unpickled)) {
      if (tensor.numel() > 0) tensor.sum();  // reads every element of the view
    }
  } catch (const instseg::CheckpointError&) {
  }
  try {
    ckpt::to_ivalue(unpickled);
  } catch (const instseg::CheckpointError&) {
  }
  return 0;
}
