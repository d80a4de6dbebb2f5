// Drawing figures with gnuplot: the pieces every figure shares (quoting, the terminal preamble, running gnuplot
// with its errors turned into dsmoe::Error), and two generic figures — a line chart and a heatmap — for reports
// that are not a training run's metrics (the ablation ladder, the specialisation analyses).
//
// Every figure is written as NAME.png with its data (NAME.dat) and script (NAME.gp) beside it, so
// `gnuplot NAME.gp` in that directory redraws it; gnuplot's output goes to gnuplot.log there.
// The gnuplot binary is `gnuplot` on PATH, or $DSMOE_GNUPLOT.
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace dsmoe::report {

// A number for a gnuplot data file; non-finite values become NaN (a gap in the curve).
std::string num(double v);
// A gnuplot single-quoted string (file names) and double-quoted string (titles; the terminal is noenhanced).
std::string sq(const std::string& s);
std::string dq(const std::string& s);
// Shortest readable form of a value for titles and keys.
std::string pretty(double v);
// Terminal (pngcairo where available, else png) and shared style, writing to png's file name.
std::string preamble(const std::filesystem::path& png, int width, int height);
void write_text(const std::filesystem::path& path, const std::string& text);
// Run `gnuplot script` in the script's directory, output appended to log; failure or no PNG: dsmoe::Error.
void run_gnuplot(const std::filesystem::path& script, const std::filesystem::path& log,
                 const std::filesystem::path& png);

// ---- generic figures ----

struct Series {
  std::string title;
  std::vector<double> x, y;
  std::vector<double> y_err;  // empty, or one half-width per point: drawn as error bars
  bool points = true;         // markers on the line
};

struct LineChart {
  std::string title, x_label, y_label;
  std::vector<Series> series;
  bool log_x = false;
  std::vector<std::string> x_tic_labels;  // non-empty: category axis, x[i] = i (a bar-like chart of lines)
  int width = 1000, height = 600;
};

// Writes DIR/NAME.png (+ .dat, .gp); returns the PNG's path. A chart without any finite point: dsmoe::Error.
std::string draw_line_chart(const std::string& dir, const std::string& name, const LineChart& chart);

struct Heatmap {
  std::string title, x_label, y_label;
  std::vector<std::string> row_labels;      // one per row (y axis, top to bottom)
  std::vector<std::vector<double>> values;  // [rows][cols]
  std::string colour_label;
  int width = 1100, height = 500;
};

// Writes DIR/NAME.png (+ .dat, .gp); returns the PNG's path.
std::string draw_heatmap(const std::string& dir, const std::string& name, const Heatmap& map);

}  // namespace dsmoe::report
