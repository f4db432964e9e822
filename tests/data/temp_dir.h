#pragma once
// Folders for writing broken files (support/test_dir.h), and the message a bad input raises.
#include <gtest/gtest.h>

#include <functional>
#include <string>

#include "instseg/errors.h"
#include "support/test_dir.h"

namespace instseg::testing {

// The message of the InputError that f throws, or "no error".
inline std::string input_error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  }
  return "no error";
}

}  // namespace instseg::testing
