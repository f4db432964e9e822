#pragma once
// The instseg program's subcommands. Each register_* adds one subcommand to the app; its callback
// runs the command and throws an instseg error (InputError, CheckpointError, ConfigError) on
// failure, which main prints as one "error: ..." line with a non-zero exit code.
#include <string>

namespace CLI {
class App;
}

namespace instseg::cli {

void register_predict(CLI::App& app);
void register_eval(CLI::App& app);
void register_train(CLI::App& app);
void register_demo(CLI::App& app);
void register_explain(CLI::App& app);
void register_serve(CLI::App& app);

// Subcommand names in the order they are registered (for errors naming an unknown one).
inline constexpr const char* kCommands[] = {"predict", "eval", "train", "demo", "explain", "serve"};

// What `instseg --version` prints: instseg's version (the CMake project's, given by the caller),
// LibTorch's and OpenCV's, and the CPU features the program uses (AVX2 / AVX-512 kernels,
// native bfloat16 for optim.precision auto, AMX).
std::string version_report(const std::string& instseg_version);

}  // namespace instseg::cli
