// dsmoe::Error — the one exception type of the engine.
// Why an exception: every bad input (malformed file, wrong shape, bad config) must end in one clear line and a
// non-zero exit at the CLI boundary, never a crash; throwing lets deep code report without threading error codes.
#pragma once
#include <stdexcept>
#include <string>
#include <utility>

#include <fmt/format.h>

namespace dsmoe {

struct Error : std::runtime_error {
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// fail("tensor {} has shape {}", name, shape) — format and throw.
template <typename... Args>
[[noreturn]] inline void fail(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...));
}

// check(cond, "...") — throw a formatted Error when cond is false.
template <typename... Args>
inline void check(bool cond, fmt::format_string<Args...> format, Args&&... args) {
  if (!cond) throw Error(fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace dsmoe
