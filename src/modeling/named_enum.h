#pragma once
// One table per option enum gives both directions of its config vocabulary, so to_string and the
// parser cannot disagree.
#include <array>
#include <string>
#include <utility>

#include "instseg/errors.h"

namespace instseg::detail {

template <typename Enum, size_t N>
using NameTable = std::array<std::pair<const char*, Enum>, N>;

template <typename Enum, size_t N>
std::string name_of(const NameTable<Enum, N>& table, Enum value) {
  for (const auto& [name, v] : table) {
    if (v == value) return name;
  }
  return "unknown";
}

// Throws ConfigError("<key> must be one of a | b | c, got \"<name>\"") for an unknown name.
template <typename Enum, size_t N>
Enum value_named(const NameTable<Enum, N>& table, const std::string& name, const std::string& key) {
  std::string choices;
  for (const auto& [n, v] : table) {
    if (name == n) return v;
    choices += (choices.empty() ? "" : " | ") + std::string(n);
  }
  throw ConfigError(key + " must be one of " + choices + ", got \"" + name + "\"");
}

}  // namespace instseg::detail
