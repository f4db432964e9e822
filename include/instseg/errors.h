#pragma once
// Exception types thrown by the library. Library code throws; only the program's main prints the
// message and picks the exit code. Messages name the file and the field, entry or byte at fault.
#include <stdexcept>
#include <string>

namespace instseg {

// A user-supplied input (image, annotation file, results file) is missing or malformed.
class InputError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A checkpoint cannot be read or does not fit the model (missing, unexpected, mis-shaped keys).
class CheckpointError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// An option or config value is out of range or unknown.
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Training cannot go on (a non-finite loss); the message names the iteration and the images.
class TrainingError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A job of several processes (torchrun, Slurm) cannot go on: joining failed, another rank died or
// stopped answering within the timeout. The message names the rank(s), the address or the variable.
class DistributedError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A command finished its work but some items failed (each already reported), e.g. predict on a
// folder with unreadable images: the exit code must still say so.
class CommandFailed : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace instseg
