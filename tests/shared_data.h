// Tests that read the project's shared data (../shared: the DeepSeek tokenizer files, the Brown corpus). Under CI
// (CI=true) missing data fails the test: CI has it, so a missing file there is a broken set-up, not a reason to pass.
// Elsewhere the test is skipped, with a line on stderr that names the missing path, so a developer without
// ../shared sees exactly what did not run (ctest lists the test as Skipped).
#pragma once
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

#include <gtest/gtest.h>

namespace dsmoe::testing {

inline bool running_in_ci() {
  const char* ci = std::getenv("CI");
  return ci != nullptr && std::strcmp(ci, "") != 0 && std::strcmp(ci, "0") != 0 && std::strcmp(ci, "false") != 0;
}

// The shared data directory the build was configured with (DSMOE_SHARED_DIR, ../shared beside the source tree).
inline std::string shared_path(const std::string& relative) {
  return (std::filesystem::path(DSMOE_SHARED_DIR) / relative).string();
}

inline std::string missing_shared_message(const std::string& path) {
  return "needs " + path + " (the shared data directory ../shared is absent)";
}

}  // namespace dsmoe::testing

// Fail (CI) or skip loudly (elsewhere) unless the file exists. Use at the top of a TEST body: it returns from it.
#define DSMOE_REQUIRE_SHARED_FILE(path)                                                                             \
  do {                                                                                                              \
    const std::string dsmoe_shared_path_ = (path);                                                                  \
    if (!std::filesystem::exists(dsmoe_shared_path_)) {                                                             \
      const std::string dsmoe_shared_msg_ = ::dsmoe::testing::missing_shared_message(dsmoe_shared_path_);           \
      if (::dsmoe::testing::running_in_ci()) FAIL() << "CI=true: " << dsmoe_shared_msg_;                            \
      std::fprintf(stderr, "*** SKIPPED %s: %s\n", ::testing::UnitTest::GetInstance()->current_test_info()->name(), \
                   dsmoe_shared_msg_.c_str());                                                                      \
      GTEST_SKIP() << dsmoe_shared_msg_;                                                                            \
    }                                                                                                               \
  } while (0)
