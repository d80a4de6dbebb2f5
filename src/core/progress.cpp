#include "core/progress.h"

#include <unistd.h>

#include <cmath>

#include <fmt/format.h>

namespace dsmoe {

Progress::Progress(std::string label, int64_t total, FILE* out)
    : label_(std::move(label)), total_(total), out_(out), tty_(isatty(fileno(out)) != 0) {
  start_ = last_draw_ = std::chrono::steady_clock::now();
}

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const int64_t t = static_cast<int64_t>(s + 0.5);
  if (t >= 3600) return fmt::format("{}h{:02d}m", t / 3600, (t % 3600) / 60);
  if (t >= 60) return fmt::format("{}m{:02d}s", t / 60, t % 60);
  return fmt::format("{}s", t);
}

void Progress::update(int64_t done, const std::string& extra) {
  const auto now = std::chrono::steady_clock::now();
  const double since = std::chrono::duration<double>(now - last_draw_).count();
  if (since < (tty_ ? 0.1 : 5.0)) return;  // a terminal redraws often; a log gets a line every 5 s
  last_draw_ = now;
  draw(done, extra, false);
}

void Progress::finish(const std::string& extra) { draw(total_, extra, true); }

void Progress::draw(int64_t done, const std::string& extra, bool final) {
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double rate = elapsed > 0 ? done / elapsed / 1e6 : 0.0;
  std::string line = fmt::format("{} {:.1f} MB", label_, done / 1e6);
  if (total_ > 0) {
    const double frac = std::min(1.0, static_cast<double>(done) / total_);
    if (tty_) {
      const int width = 24, filled = static_cast<int>(frac * width);
      line = fmt::format("{} [{}{}] {:5.1f}%", label_, std::string(filled, '#'), std::string(width - filled, '.'),
                         100 * frac);
    } else {
      line += fmt::format(" / {:.1f} MB ({:.1f}%)", total_ / 1e6, 100 * frac);
    }
    if (!final && rate > 0) line += fmt::format("  ETA {}", format_duration((total_ - done) / 1e6 / rate));
  }
  line += fmt::format("  {:.1f} MB/s", rate);
  if (final) line += fmt::format("  in {}", format_duration(elapsed));
  if (!extra.empty()) line += "  " + extra;
  if (tty_) {
    fmt::print(out_, "\r\033[K{}{}", line, final ? "\n" : "");
  } else {
    fmt::print(out_, "{}\n", line);
  }
  std::fflush(out_);
}

}  // namespace dsmoe
