#pragma once
// The .pth reader's entry points below the public read_state_dict/read_archive: a whole file held
// in memory (zip or legacy format) to values, and values to a state dict or IValue. Internal to
// instseg_checkpoint; the fuzz harness drives these with bytes in memory.
#include <ATen/core/ivalue.h>

#include <string>

#include "checkpoint/pickle.h"
#include "instseg/checkpoint/state_dict.h"

namespace instseg::checkpoint_detail {

struct Unpickled {
  ValuePtr root;
  std::string path;    // the file, as messages name it
  std::string record;  // "data.pkl" for the zip format (offsets are within it), empty for legacy
};

// `bytes` is the whole file, `path` names it in messages. Throws CheckpointError.
Unpickled unpickle_bytes(const std::string& bytes, const std::string& path);

// The state dict in `data` (or in its "model"/"state_dict" entry); throws CheckpointError.
StateDict to_state_dict(const Unpickled& data);
// Any value of plain Python types and tensors; throws CheckpointError for Python objects.
c10::IValue to_ivalue(const Unpickled& data);

}  // namespace instseg::checkpoint_detail
