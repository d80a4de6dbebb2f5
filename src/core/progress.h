// Progress reporting: a live bar redrawn in place on a terminal, plain lines (at most every few seconds) when the
// output is a file or a pipe, so logs stay readable.
#pragma once
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace dsmoe {

class Progress {
 public:
  // total: units of work (bytes here) for the percentage and ETA; 0 = unknown. unit: "MB" scales bytes to MB/s.
  Progress(std::string label, int64_t total, FILE* out = stderr);
  void update(int64_t done, const std::string& extra = "");
  void finish(const std::string& extra = "");

 private:
  void draw(int64_t done, const std::string& extra, bool final);
  std::string label_;
  int64_t total_;
  FILE* out_;
  bool tty_;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

std::string format_duration(double seconds);  // "1h02m", "3m05s", "12s"

}  // namespace dsmoe
