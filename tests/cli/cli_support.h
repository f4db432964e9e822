#pragma once
// Running the instseg program as a user would: arguments in, exit code, stdout and stderr out.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "support/test_dir.h"

namespace instseg::testing {

struct ProgramResult {
  int exit_code = -1;
  std::string out, err;
  // Lines of stderr that start with "error:" (progress bars use \r, so split on both).
  std::vector<std::string> error_lines() const {
    std::vector<std::string> lines;
    std::string line;
    for (char c : err + "\n") {
      if (c == '\n' || c == '\r') {
        if (line.rfind("error:", 0) == 0) lines.push_back(line);
        line.clear();
      } else {
        line += c;
      }
    }
    return lines;
  }
};

// A refused run: exit code 1 and exactly one "error:" line, naming each of `named`.
inline void expect_one_error(const ProgramResult& run, const std::vector<std::string>& named) {
  EXPECT_EQ(run.exit_code, 1) << run.err;
  const auto lines = run.error_lines();
  ASSERT_EQ(lines.size(), 1u) << run.err;
  for (const auto& n : named) EXPECT_THAT(lines[0], ::testing::HasSubstr(n));
}

inline std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// Runs `program` (shell-quoted) with `args` and stdin from /dev/null; the streams are captured in
// <scratch>/<prefix>stdout.txt and <prefix>stderr.txt.
inline ProgramResult run_captured(const std::string& program, const std::vector<std::string>& args,
                                  const std::string& scratch, const std::string& prefix) {
  std::filesystem::create_directories(scratch);
  const std::string out = scratch + "/" + prefix + "stdout.txt", err = scratch + "/" + prefix + "stderr.txt";
  std::string command = program;
  for (const auto& a : args) command += " " + shell_quote(a);
  command += " >" + shell_quote(out) + " 2>" + shell_quote(err) + " </dev/null";
  const int status = std::system(command.c_str());
  ProgramResult result;
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  result.out = read_file_bytes(out);
  result.err = read_file_bytes(err);
  return result;
}

// Runs INSTSEG_BINARY_DIR/instseg with `args`; `scratch` is a folder for the captured streams.
inline ProgramResult run_instseg(const std::vector<std::string>& args, const std::string& scratch) {
  return run_captured(shell_quote(INSTSEG_BINARY_DIR "/instseg"), args, scratch, "");
}

// Runs the reference Python (INSTSEG_PYTHON) on tests/reference/<script> with `args`, captured the same way.
inline ProgramResult run_reference_python(const std::string& script, const std::vector<std::string>& args,
                                          const std::string& scratch) {
  return run_captured(INSTSEG_PYTHON " " + shell_quote(INSTSEG_SOURCE_DIR "/tests/reference/" + script), args,
                      scratch, "python_");
}

}  // namespace instseg::testing
