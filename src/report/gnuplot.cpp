#include "report/gnuplot.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>

#include <fmt/format.h>

#include "core/error.h"

extern char** environ;

namespace dsmoe::report {

namespace fs = std::filesystem;

// A number for a gnuplot data file; non-finite values become NaN (a gap in the curve).
std::string num(double v) { return std::isfinite(v) ? fmt::format("{:.9g}", v) : std::string("NaN"); }

// A gnuplot single-quoted string (no escapes; a quote is doubled): file names.
std::string sq(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("''") : std::string(1, c);
  return out + "'";
}

// A gnuplot double-quoted string: titles and labels (the terminal is noenhanced, so only \ and " are special).
std::string dq(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n' || c == '\r') c = ' ';
    out += c;
  }
  return out + "\"";
}

// Shortest readable form of a value for titles and keys.
std::string pretty(double v) { return fmt::format("{:.4g}", v); }

// Terminal and shared style. pngcairo (anti-aliased) when this gnuplot has it, else libgd's png.
std::string preamble(const fs::path& png, int width, int height) {
  std::string s;
  s += "# written by dsmoe; redraw with: gnuplot " + png.stem().string() + ".gp (in this directory)\n";
  s += "reset\n";
  s += "if (strstrt(GPVAL_TERMINALS, ' pngcairo ') > 0) {\n";
  s +=
      fmt::format("  set terminal pngcairo size {},{} noenhanced font 'DejaVu Sans,12' linewidth 1.2\n", width, height);
  s += "} else {\n";
  s += fmt::format("  set terminal png size {},{} noenhanced font 'DejaVu Sans,12' linewidth 1.2\n", width, height);
  s += "}\n";
  s += "set output " + sq(png.filename().string()) + "\n";
  s += "set encoding utf8\n";
  s += "set datafile missing 'NaN'\n";
  s += "set border lw 1 lc rgb '#404040'\n";
  s += "set grid xtics ytics back lt 1 lc rgb '#d9d9d9' lw 1\n";
  s += "set tics nomirror out\n";
  s += "set key box lc rgb '#bbbbbb' opaque samplen 2.5 spacing 1.2\n";
  return s;
}

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  check(out.good(), "cannot write {}", path.string());
  out << text;
  out.close();
  check(out.good(), "write error in {}", path.string());
}

std::string gnuplot_binary() {
  const char* env = std::getenv("DSMOE_GNUPLOT");
  return env != nullptr && *env != '\0' ? std::string(env) : std::string("gnuplot");
}

// The last non-empty line of gnuplot's output from byte `from` on (its error message).
std::string last_log_line(const fs::path& log, std::uintmax_t from) {
  std::ifstream in(log, std::ios::binary);
  in.seekg(static_cast<std::streamoff>(from));
  std::string line, last;
  while (std::getline(in, line)) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    if (!line.empty()) last = line;
  }
  return last.empty() ? std::string("no output") : last;
}

// Run `gnuplot script` in the script's directory (the scripts name their files relative to it, so RUN can move),
// its stdout and stderr appended to log; a non-zero exit or a missing PNG is an error.
void run_gnuplot(const fs::path& script, const fs::path& log, const fs::path& png) {
  const std::string binary = gnuplot_binary();
  const std::uintmax_t log_start = fs::exists(log) ? fs::file_size(log) : 0;
  std::error_code ec;
  fs::remove(png, ec);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  const std::string log_abs = fs::absolute(log).string();
  posix_spawn_file_actions_addopen(&actions, 1, log_abs.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  const std::string dir = fs::absolute(script).parent_path().string();
  posix_spawn_file_actions_addchdir_np(&actions, dir.c_str());
  std::string arg0 = binary, arg1 = script.filename().string();
  char* argv[] = {arg0.data(), arg1.data(), nullptr};
  pid_t pid = 0;
  const int rc = binary.find('/') == std::string::npos
                     ? posix_spawnp(&pid, binary.c_str(), &actions, nullptr, argv, environ)
                     : posix_spawn(&pid, binary.c_str(), &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc == ENOENT || rc == EACCES || rc == ENOEXEC)
    fail("gnuplot not found ({}: {}): apt-get install gnuplot-nox", binary, std::strerror(rc));
  check(rc == 0, "cannot start {}: {}", binary, std::strerror(rc));

  int status = 0;
  while (waitpid(pid, &status, 0) < 0) check(errno == EINTR, "waitpid for gnuplot: {}", std::strerror(errno));
  // A shell wrapper (or env) reports a missing program as 127.
  if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
    fail("gnuplot not found ({} exited 127): apt-get install gnuplot-nox", binary);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    const std::string how = WIFEXITED(status) ? fmt::format("exit status {}", WEXITSTATUS(status))
                                              : fmt::format("signal {}", WTERMSIG(status));
    fail("gnuplot failed on {} ({}): {} (see {})", script.string(), how, last_log_line(log, log_start), log.string());
  }
  check(fs::exists(png) && fs::file_size(png) > 0, "gnuplot wrote no {} (see {})", png.string(), log.string());
}

// ---- generic figures ----

namespace {

// Writes NAME.dat and NAME.gp in dir and runs gnuplot on them.
std::string draw(const std::string& dir, const std::string& name, int width, int height, const std::string& data,
                 const std::string& script) {
  const fs::path d(dir);
  fs::create_directories(d);
  const fs::path png = d / (name + ".png"), gp = d / (name + ".gp");
  write_text(d / (name + ".dat"), data);
  write_text(gp, preamble(png, width, height) + script);
  run_gnuplot(gp, d / "gnuplot.log", png);
  return png.string();
}

}  // namespace

std::string draw_line_chart(const std::string& dir, const std::string& name, const LineChart& chart) {
  // One data block per series (separated by two blank lines: gnuplot's `index`).
  std::string data;
  bool any = false;
  for (size_t i = 0; i < chart.series.size(); ++i) {
    const Series& s = chart.series[i];
    check(s.x.size() == s.y.size() && (s.y_err.empty() || s.y_err.size() == s.y.size()),
          "chart {}: series '{}' has {} x, {} y and {} error values", name, s.title, s.x.size(), s.y.size(),
          s.y_err.size());
    data += "# " + s.title + "\n";
    for (size_t k = 0; k < s.x.size(); ++k) {
      any = any || (std::isfinite(s.x[k]) && std::isfinite(s.y[k]));
      data += num(s.x[k]) + " " + num(s.y[k]) + " " + num(s.y_err.empty() ? 0.0 : s.y_err[k]) + "\n";
    }
    data += "\n\n";
  }
  check(any, "chart {}: no finite point to draw", name);
  std::string g;
  g += "set title " + dq(chart.title) + "\n";
  g += "set xlabel " + dq(chart.x_label) + "\nset ylabel " + dq(chart.y_label) + "\n";
  if (chart.log_x) g += "set logscale x 2\n";
  if (!chart.x_tic_labels.empty()) {
    std::string tics;
    for (size_t i = 0; i < chart.x_tic_labels.size(); ++i)
      tics += fmt::format("{}{} {}", i ? ", " : "", dq(chart.x_tic_labels[i]), i);
    g += "set xtics (" + tics + ")\n";
    g += fmt::format("set xrange [-0.5:{}]\n", static_cast<double>(chart.x_tic_labels.size()) - 0.5);
  }
  g += "set key outside right top\n";
  const std::string dat = sq(name + ".dat");
  std::string plot;
  for (size_t i = 0; i < chart.series.size(); ++i) {
    const Series& s = chart.series[i];
    const std::string style = s.points ? "linespoints pt 7 ps 0.8" : "lines";
    plot += fmt::format("{}{} index {} using 1:2 with {} lw 2 lc {} title {}", i ? ", \\\n     " : "plot ", dat, i,
                        style, i + 1, dq(s.title));
    if (!s.y_err.empty())
      plot +=
          fmt::format(", \\\n     {} index {} using 1:2:3 with yerrorbars lc {} pt 7 ps 0.5 notitle", dat, i, i + 1);
  }
  g += plot + "\n";
  return draw(dir, name, chart.width, chart.height, data, g);
}

std::string draw_heatmap(const std::string& dir, const std::string& name, const Heatmap& map) {
  const size_t rows = map.values.size();
  check(rows > 0 && rows == map.row_labels.size(), "heatmap {}: {} rows of values, {} row labels", name, rows,
        map.row_labels.size());
  const size_t cols = map.values[0].size();
  double lo = 0, hi = 0;
  std::string data;
  for (size_t r = 0; r < rows; ++r) {
    check(map.values[r].size() == cols && cols > 0, "heatmap {}: row {} has {} values, expected {}", name, r,
          map.values[r].size(), cols);
    for (size_t c = 0; c < cols; ++c) {
      const double v = map.values[r][c];
      if (std::isfinite(v)) lo = std::min(lo, v), hi = std::max(hi, v);
      data += fmt::format("{} {} {}\n", c, r, num(v));
    }
  }
  std::string g;
  g += "set title " + dq(map.title) + "\n";
  g += "set xlabel " + dq(map.x_label) + "\nset ylabel " + dq(map.y_label) + "\n";
  g += fmt::format("set xrange [-0.5:{}]\nset yrange [{}:-0.5]\n", static_cast<double>(cols) - 0.5,
                   static_cast<double>(rows) - 0.5);
  std::string ytics;
  for (size_t r = 0; r < rows; ++r) ytics += fmt::format("{}{} {}", r ? ", " : "", dq(map.row_labels[r]), r);
  g += "set ytics (" + ytics + ")\n";
  if (cols > 32) g += "set xtics 0,8\n";
  g += "set grid noxtics noytics\nunset key\n";
  g += fmt::format("set cbrange [{}:{}]\n", num(lo), num(hi > lo ? hi : lo + 1));
  g += "set cblabel " + dq(map.colour_label) + "\n";
  g += "set palette defined (0 '#f7f7f7', 0.5 '#6baed6', 1 '#08306b')\n";
  g += "set style fill solid 1.0 noborder\n";
  g += "plot " + sq(name + ".dat") + " using 1:2:(0.5):(0.5):3 with boxxyerror fc palette notitle\n";
  return draw(dir, name, map.width, map.height, data, g);
}

}  // namespace dsmoe::report
