#pragma once
// The one shape of an options struct's validation error: "<path> must be <rule>, got <value>",
// the path relative to MaskRcnnOptions (the config layer prefixes "model.") and the value as
// written (0.5, 800 - not 800.000000).
#include <sstream>
#include <string>

#include "instseg/errors.h"

namespace instseg::detail {

inline void require_option(bool ok, const std::string& path, const std::string& rule, double value) {
  if (ok) return;
  std::ostringstream msg;
  msg << path << " must be " << rule << ", got " << value;
  throw ConfigError(msg.str());
}

}  // namespace instseg::detail
