#pragma once
// The message of the InputError a piece of code throws, for asserting on what users are told.
#include <functional>
#include <string>

#include "instseg/errors.h"

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
