// The instseg program: parses the command line and reports errors; the work is in the library.
#include <CLI/CLI.hpp>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <iterator>
#include <new>
#include <string>

#include "instseg/cli/commands.h"
#include "instseg/common/blas_threads.h"
#include "instseg/common/process_memory.h"
#include "instseg/errors.h"

#ifndef INSTSEG_VERSION
#define INSTSEG_VERSION "unknown"  // CMakeLists.txt passes the project's VERSION
#endif

namespace {

// In a launched job (torchrun, Slurm) several processes write to one terminal or log: an error
// says which rank it comes from ("error: rank 1: ..."). RANK is read as is here: a malformed value
// is reported by the command that reads the launch variables, without a prefix.
std::string rank_prefix() {
  const char* rank = std::getenv("RANK");
  if (rank == nullptr || *rank == '\0') return "";
  for (const char* c = rank; *c; ++c)
    if (*c < '0' || *c > '9') return "";
  return std::string("rank ") + rank + ": ";
}

// "error: " plus the rank, unless the message already starts with it (the distributed layer's
// messages name their rank themselves).
std::string error_start(const std::string& message) {
  const std::string prefix = rank_prefix();
  if (prefix.empty() || message.rfind(prefix, 0) == 0) return "error: ";
  return "error: " + prefix;
}

void report(const std::string& message) { std::cerr << error_start(message) << message << "\n"; }

// CLI11 reports an unknown first word as a missing subcommand without naming it: name it here.
bool is_unknown_command(int argc, char** argv) {
  if (argc < 2 || argv[1][0] == '-') return false;
  const std::string word = argv[1];
  const auto& commands = instseg::cli::kCommands;
  if (std::find(std::begin(commands), std::end(commands), word) != std::end(commands)) return false;
  std::cerr << error_start("") << "instseg: unknown command '" << word << "' (commands:";
  for (const char* c : commands) std::cerr << (c == commands[0] ? " " : ", ") << c;
  std::cerr << ")\n";
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  instseg::keep_freed_memory_in_process();
  // One BLAS thread: the products run on the thread that calls them while LibTorch's OpenMP
  // threads keep both cores for the convolutions (faster for training and prediction here).
  instseg::set_openblas_threads(1);
  CLI::App app{"instseg: Mask R-CNN instance segmentation (inference, evaluation, training)"};
  app.require_subcommand(1);
  app.set_version_flag("--version", [] { return instseg::cli::version_report(INSTSEG_VERSION); },
                       "Print instseg's, LibTorch's and OpenCV's versions and the CPU features used, then exit");
  instseg::cli::register_predict(app);
  instseg::cli::register_eval(app);
  instseg::cli::register_train(app);
  instseg::cli::register_demo(app);
  instseg::cli::register_explain(app);
  instseg::cli::register_serve(app);
  app.footer(
      "Run 'instseg COMMAND --help' for a command's options and examples.\n\n"
      "Examples:\n"
      "  instseg predict --weights maskrcnn_resnet50_fpn.pth --input photos/ --out predictions/\n"
      "  instseg train --config configs/demo.json --out runs/first\n"
      "  instseg eval --gt val/annotations.json --results predictions/predictions.json\n"
      "  instseg demo --out runs/demo --minutes 5\n"
      "  instseg explain --input photo.jpg --weights runs/first --out explain/\n"
      "  instseg serve --weights runs/first --port 8080");
  if (is_unknown_command(argc, argv)) return 1;
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {  // --help, --version
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    report(e.what());
    return 1;
  } catch (const instseg::CommandFailed& e) {
    // Details were already reported item by item; this is the summary line.
    report(e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    // Training steps and data loading name their iteration and images themselves; this is the
    // rest (a model too large for memory, a validation or prediction at a huge input size).
    std::cerr << error_start("") << "out of memory (std::bad_alloc); lower the input size (--max-size, model.max_size) "
                 "or optim.batch_size\n";
    return 1;
  } catch (const c10::Error& e) {
    // LibTorch's message carries a C++ backtrace after its first lines: one error, one message.
    report(e.what_without_backtrace());
    return 1;
  } catch (const std::exception& e) {
    // DistributedError included: another rank died or hung, or the job could not be joined.
    report(e.what());
    return 1;
  }
  return 0;
}
