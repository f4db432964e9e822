// The instseg program: parses the command line and reports errors; the work is in the library.
#include <CLI/CLI.hpp>
#include <c10/util/Exception.h>

#include <exception>
#include <iostream>
#include <new>

#include "instseg/cli/commands.h"
#include "instseg/common/blas_threads.h"
#include "instseg/common/process_memory.h"
#include "instseg/errors.h"

int main(int argc, char** argv) {
  instseg::keep_freed_memory_in_process();
  // One BLAS thread: the products run on the thread that calls them while LibTorch's OpenMP
  // threads keep both cores for the convolutions (faster for training and prediction here).
  instseg::set_openblas_threads(1);
  CLI::App app{"instseg: Mask R-CNN instance segmentation (inference, evaluation, training)"};
  app.require_subcommand(1);
  instseg::cli::register_predict(app);
  instseg::cli::register_eval(app);
  instseg::cli::register_train(app);
  instseg::cli::register_demo(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {  // --help
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  } catch (const instseg::CommandFailed& e) {
    // Details were already reported item by item; this is the summary line.
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  } catch (const std::bad_alloc&) {
    // Training steps and data loading name their iteration and images themselves; this is the
    // rest (a model too large for memory, a validation or prediction at a huge input size).
    std::cerr << "error: out of memory (std::bad_alloc); lower the input size (--max-size, model.max_size) "
                 "or optim.batch_size\n";
    return 1;
  } catch (const c10::Error& e) {
    // LibTorch's message carries a C++ backtrace after its first lines: one error, one message.
    std::cerr << "error: " << e.what_without_backtrace() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
