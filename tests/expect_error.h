// expect_error(f, {"part", ...}): f must throw dsmoe::Error whose one-line message contains every part.
#pragma once
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/error.h"

template <typename F>
void expect_error(F&& f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "expected dsmoe::Error, nothing thrown";
  } catch (const dsmoe::Error& e) {
    const std::string msg = e.what();
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "multi-line error: " << msg;
  }
}
