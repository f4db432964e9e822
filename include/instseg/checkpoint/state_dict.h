#pragma once
// Reading and writing PyTorch .pth files: state dicts as Python's torch.save writes them, in the
// zip format (default since PyTorch 1.6) and the legacy format (_use_new_zipfile_serialization=False).
// Formats and rules: docs/checkpoints.md.
#include <ATen/core/ivalue.h>
#include <torch/nn/module.h>
#include <torch/types.h>

#include <string>
#include <utility>
#include <vector>

namespace instseg {

// (dotted name, tensor) in the file's order. Views that shared a storage in the file still share it.
using StateDict = std::vector<std::pair<std::string, torch::Tensor>>;

// Reads a state dict from a .pth file. A file holding a dict that wraps the state dict (training
// scripts' {"model": ..., "epoch": ...}) yields its "model" or "state_dict" entry.
// Throws CheckpointError naming the file and the byte offset or record for unreadable input.
StateDict read_state_dict(const std::string& path);

// Writes a state dict that Python's torch.load reads as a dict (key order kept), atomically.
void save_state_dict(const std::string& path, const StateDict& state_dict);

// Parameters and buffers of `module` by dotted name, in the order Python's Module.state_dict()
// gives for the same module tree: per module, its parameters, then its buffers, depth-first.
StateDict module_state_dict(const torch::nn::Module& module);

// Any value torch.save can write from nested dicts/lists/tuples of tensors, ints, doubles, bools,
// strings and None (training state: optimizer buffers, iteration, RNG state). Written with
// LibTorch's pickler, so Python's torch.load reads it too; read back with our reader: dicts come
// back as GenericDict (str keys, Any values), lists as GenericList.
void save_archive(const std::string& path, const c10::IValue& value);
c10::IValue read_archive(const std::string& path);

}  // namespace instseg
