#pragma once
// The message of the error a piece of code throws, for asserting on what users are told.
#include <functional>
#include <string>

#include "instseg/errors.h"

namespace instseg::testing {

// The message of the `Error` that f throws, or `none` when it throws nothing.
template <typename Error>
std::string error_message_of(const std::function<void()>& f, const std::string& none) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return none;
}

// The message of the InputError that f throws, or "no error".
inline std::string input_error_of(const std::function<void()>& f) { return error_message_of<InputError>(f, "no error"); }

}  // namespace instseg::testing
