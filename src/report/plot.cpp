#include "report/plot.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "report/gnuplot.h"

namespace dsmoe::report {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// ---- reading metrics.jsonl ----

bool is_blank(const std::string& line) {
  return std::all_of(line.begin(), line.end(), [](char c) { return c == ' ' || c == '\t' || c == '\r'; });
}

// A JSON parse error without nlohmann's "[json.exception.parse_error.101] " prefix, and without "line 1, " (the
// parser saw one line; the caller names the file's line).
std::string short_reason(const std::string& what) {
  const size_t close = what.find("] ");
  std::string out = what.starts_with("[json.exception") && close != std::string::npos ? what.substr(close + 2) : what;
  if (const size_t at = out.find("at line 1, column"); at != std::string::npos) out.erase(at + 3, 8);
  return out;
}

struct LineContext {
  const std::string& path;
  int64_t line;
};

// Optional number: absent or null -> NaN; anything but a number -> error.
double number_or_nan(const json& j, const char* key, const LineContext& at) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) return kNaN;
  check(it->is_number(), "{}:{}: \"{}\" must be a number, got {}", at.path, at.line, key, it->type_name());
  return it->get<double>();
}

int64_t required_integer(const json& j, const char* key, const std::string& type, const LineContext& at) {
  const auto it = j.find(key);
  check(it != j.end(), "{}:{}: {} record without \"{}\"", at.path, at.line, type, key);
  check(it->is_number(), "{}:{}: \"{}\" must be a number, got {}", at.path, at.line, key, it->type_name());
  const double v = it->get<double>();
  check(std::isfinite(v) && v == std::floor(v) && std::fabs(v) < 9e15, "{}:{}: \"{}\" must be an integer, got {}",
        at.path, at.line, key, it->dump());
  return static_cast<int64_t>(v);
}

// ---- figures ----

struct Figure {
  std::string name;  // loss -> loss.png, loss.gp
  int width = 1000, height = 600;
  std::string script;  // after the preamble
};

struct Plotter {
  fs::path dir;  // RUN/plots
  std::string run;
  PlotResult result;

  void draw(const Figure& f) {
    const fs::path png = dir / (f.name + ".png"), gp = dir / (f.name + ".gp");
    write_text(gp, preamble(png, f.width, f.height) + f.script);
    run_gnuplot(gp, dir / "gnuplot.log", png);
    result.files.push_back(png.string());
  }
  void note(std::string text) { result.notes.push_back(std::move(text)); }
  fs::path data(const std::string& name) const { return dir / name; }
};

bool any_finite(const std::vector<TrainRecord>& train, double TrainRecord::*field) {
  return std::any_of(train.begin(), train.end(), [&](const TrainRecord& r) { return std::isfinite(r.*field); });
}

// Centered moving average over the finite values of a window of `w` points (w odd); NaN where none are finite.
std::vector<double> smooth(const std::vector<double>& v, size_t w) {
  const size_t half = w / 2;
  std::vector<double> out(v.size(), kNaN);
  for (size_t i = 0; i < v.size(); ++i) {
    double sum = 0;
    size_t n = 0;
    for (size_t k = i >= half ? i - half : 0; k <= std::min(v.size() - 1, i + half); ++k)
      if (std::isfinite(v[k])) sum += v[k], ++n;
    if (n > 0 && std::isfinite(v[i])) out[i] = sum / static_cast<double>(n);
  }
  return out;
}

// A curve through n points: a line, with the points marked when there are few (one alone draws nothing as a line).
std::string with_lines(size_t n) { return n <= 30 ? "with linespoints pt 7 ps 0.8" : "with lines"; }

// A tic interval of 1, 2 or 5 times a power of ten giving at most `max_tics` intervals over the finite values of
// `field` (a small panel with gnuplot's automatic tics gets crowded); 0 when there is no spread.
double tic_step(const std::vector<TrainRecord>& train, double TrainRecord::*field, int max_tics) {
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (const auto& r : train)
    if (std::isfinite(r.*field)) lo = std::min(lo, r.*field), hi = std::max(hi, r.*field);
  if (!(hi > lo)) return 0;
  const double raw = (hi - lo) / max_tics, decade = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (m * decade >= raw) return m * decade;
  return 10 * decade;
}

// The x range shared by the panels of a figure.
std::string xrange(int64_t lo, int64_t hi) {
  if (lo == hi) --lo, ++hi;
  return fmt::format("set xrange [{}:{}]\n", lo, hi);
}

void plot_loss(Plotter& p, const Metrics& m) {
  const auto& train = m.train;
  std::vector<double> loss;
  for (const auto& r : train) loss.push_back(r.loss);
  // Smoothed curve once the raw one is noisy enough to need it: a window of ~2.5% of the points.
  const bool smoothed = train.size() >= 50;
  const std::vector<double> smooth_loss = smoothed ? smooth(loss, (train.size() / 40) | 1) : loss;
  std::string dat = "# step loss loss_smoothed balance\n";
  for (size_t i = 0; i < train.size(); ++i)
    dat += fmt::format("{} {} {} {}\n", train[i].step, num(loss[i]), num(smooth_loss[i]), num(train[i].balance));
  write_text(p.data("loss_train.dat"), dat);

  std::vector<EvalRecord> eval;
  for (const auto& r : m.eval)
    if (std::isfinite(r.val_loss)) eval.push_back(r);
  if (!eval.empty()) {
    std::string edat = "# step val_loss\n";
    for (const auto& r : eval) edat += fmt::format("{} {}\n", r.step, num(r.val_loss));
    write_text(p.data("loss_eval.dat"), edat);
  } else {
    p.note(m.eval.empty() ? "loss.png: no eval records, val loss not drawn"
                          : "loss.png: no finite val_loss in the eval records, val loss not drawn");
  }
  const bool balance = any_finite(train, &TrainRecord::balance);
  if (!balance) p.note("loss.png: no balance values in the train records, balance panel not drawn");

  int64_t lo = train.front().step, hi = train.back().step;
  if (!eval.empty()) lo = std::min(lo, eval.front().step), hi = std::max(hi, eval.back().step);

  // Last finite train loss (smoothed where smoothed) and best val loss, for the key.
  double last = kNaN;
  for (size_t i = train.size(); i-- > 0;)
    if (std::isfinite(smooth_loss[i])) {
      last = smooth_loss[i];
      break;
    }
  const auto best = std::min_element(eval.begin(), eval.end(),
                                     [](const EvalRecord& a, const EvalRecord& b) { return a.val_loss < b.val_loss; });

  Figure f{"loss", 1000, balance ? 720 : 600, ""};
  std::string& s = f.script;
  const std::string train_dat = sq("loss_train.dat");
  s += xrange(lo, hi);
  s += "set lmargin 11\nset rmargin 3\n";
  s += "set key top right\n";
  s += "set ylabel 'loss'\n";
  if (balance) {
    s += "set multiplot\n";
    s += "set tmargin at screen 0.92\nset bmargin at screen 0.37\n";
    s += "set format x ''\n";
  } else {
    s += "set xlabel 'step'\n";
  }
  s += "set title " + dq(p.run + ": loss") + " font ',15'\n";
  const std::string train_title = fmt::format("train loss{} (last {})", smoothed ? ", smoothed" : "", pretty(last));
  std::vector<std::string> curves;
  if (smoothed) {
    curves.push_back(train_dat + " using 1:2 with lines lc rgb '#a6c8e4' lw 1 title 'train loss'");
    curves.push_back(train_dat + " using 1:3 with lines lc rgb '#08519c' lw 2.5 title " + dq(train_title));
  } else {
    // Few points: mark them (a single one would draw nothing as a line).
    curves.push_back(train_dat + " using 1:2 " + with_lines(train.size()) + " lc rgb '#08519c' lw 2.5 title " +
                     dq(train_title));
  }
  if (!eval.empty())
    curves.push_back(sq("loss_eval.dat") + " using 1:2 with linespoints lc rgb '#d94801' lw 2.5 pt 7 ps 1.3 title " +
                     dq(fmt::format("val loss (best {} at step {})", pretty(best->val_loss), best->step)));
  s += "plot ";
  for (size_t i = 0; i < curves.size(); ++i) s += (i ? ", \\\n     " : "") + curves[i];
  s += "\n";
  if (balance) {
    s += "unset title\n";
    s += "set tmargin at screen 0.33\nset bmargin at screen 0.09\n";
    s += "set format x '% h'\nset xlabel 'step'\n";
    s += "set ylabel 'balance loss'\n";
    if (const double step = tic_step(train, &TrainRecord::balance, 4); step > 0)
      s += fmt::format("set ytics {}\n", num(step));
    s += "set key top right\n";
    s += "plot " + train_dat + " using 1:4 " + with_lines(train.size()) +
         " lc rgb '#238b45' lw 2 title 'balance (aux) loss'\n";
    s += "unset multiplot\n";
  }
  p.draw(f);
}

void plot_expert_load(Plotter& p, const Metrics& m) {
  if (m.moe.empty()) {
    p.note("expert_load.png: no moe records, not drawn");
    return;
  }
  // The last telemetry record of each layer (highest step; a later line wins a tie).
  std::map<int64_t, const MoeRecord*> last;
  for (const auto& r : m.moe) {
    auto [it, fresh] = last.emplace(r.layer, &r);
    if (!fresh && r.step >= it->second->step) it->second = &r;
  }
  size_t experts = 0;
  for (const auto& [layer, r] : last) experts = std::max(experts, r->tokens_per_expert.size());
  const size_t layers = last.size();
  std::set<int64_t> steps;
  for (const auto& [layer, r] : last) steps.insert(r->step);

  std::string dat = "# expert row share label_rgb   (rows: ";
  for (const auto& [layer, r] : last) dat += fmt::format("layer {} ", layer);
  dat += ")\n";
  double max_share = 0;
  std::vector<std::vector<double>> share(layers, std::vector<double>(experts, kNaN));
  size_t row = 0;
  for (const auto& [layer, r] : last) {
    double sum = 0;
    for (double t : r->tokens_per_expert) sum += t;
    for (size_t e = 0; e < r->tokens_per_expert.size(); ++e)
      if (sum > 0) share[row][e] = r->tokens_per_expert[e] / sum, max_share = std::max(max_share, share[row][e]);
    ++row;
  }
  const double uniform = 1.0 / static_cast<double>(experts);
  // A symmetric diverging scale: blue (0) - white (uniform) - red (twice uniform and above, saturated). A linear
  // scale up to the largest share would squeeze every other cell into the blue end when one expert hogs the layer.
  const double cb_max = 2 * uniform, white = 0.5;
  const bool capped = max_share > cb_max;
  for (size_t r = 0; r < layers; ++r) {
    for (size_t e = 0; e < experts; ++e) {
      // Label text white on the saturated ends of the palette, dark elsewhere.
      const double x = std::isfinite(share[r][e]) ? std::min(1.0, share[r][e] / cb_max) : white;
      const double far = x < white ? (white - x) / white : (x - white) / std::max(1e-9, 1 - white);
      dat += fmt::format("{} {} {} {}\n", e, r, num(share[r][e]), far > 0.6 ? 0xffffff : 0x202020);
    }
    dat += "\n";
  }
  write_text(p.data("expert_load.dat"), dat);

  Figure f{"expert_load", 1000, std::clamp(static_cast<int>(170 + 42 * layers), 420, 1200), ""};
  std::string& s = f.script;
  const std::string step_text = steps.size() == 1 ? fmt::format("step {}", *steps.begin())
                                                  : fmt::format("steps {}-{}", *steps.begin(), *steps.rbegin());
  // The title centred on the image (the heatmap sits left of centre, beside its labels and colour box).
  s += "set tmargin 4.5\nset label 1 " + dq(fmt::format("{}: expert load at {}", p.run, step_text)) +
       fmt::format(" at screen 0.5, screen {:.4f} center font ',15'\n", 1.0 - 22.0 / f.height);
  const bool labels = experts <= 32 && layers <= 24;  // the share printed in each cell
  s += "set label 2 " +
       dq(fmt::format("{}: % of the layer's routed tokens sent to each expert",
                      labels ? "colour and numbers" : "colour")) +
       fmt::format(" at screen 0.5, screen {:.4f} center font ',11' tc rgb '#404040'\n", 1.0 - 46.0 / f.height);
  s += "unset key\nunset grid\nset tics scale 0.5\n";
  s += "set xlabel 'expert'\nset ylabel 'layer'\n";
  s += fmt::format("set xrange [-0.5:{}]\n", static_cast<double>(experts) - 0.5);
  s += fmt::format("set yrange [{}:-0.5]\nset y2range [{}:-0.5]\n", static_cast<double>(layers) - 0.5,
                   static_cast<double>(layers) - 0.5);
  if (experts <= 32) {
    s += "set xtics 0,1\n";
  } else {
    int64_t step = 1;
    for (int64_t nice : {2, 4, 5, 8, 10, 16, 20, 25, 32, 50, 64, 100})
      if (static_cast<int64_t>(experts) / nice <= 20) {
        step = nice;
        break;
      }
    s += fmt::format("set xtics 0,{}\nset mxtics {}\n", step, step);
  }
  // Layer ids on the left, max_vio (and dead experts, and the step where they differ) on the right.
  std::string ytics, y2tics;
  size_t longest_y2 = 0;
  row = 0;
  const size_t label_every = std::max<size_t>(1, (layers + 31) / 32);
  for (const auto& [layer, r] : last) {
    if (row % label_every == 0) {
      ytics += fmt::format("{}\"{}\" {}", ytics.empty() ? "" : ", ", layer, row);
      double vio = r->max_vio;
      int64_t dead = 0;
      double sum = 0, mx = 0;
      for (double t : r->tokens_per_expert) sum += t, mx = std::max(mx, t), dead += t == 0;
      if (!std::isfinite(vio) && sum > 0) vio = mx / (sum / static_cast<double>(r->tokens_per_expert.size())) - 1;
      std::string label = fmt::format("max_vio {:.2f}", vio);
      if (dead > 0) label += fmt::format(", dead {}", dead);
      if (steps.size() > 1) label += fmt::format(" @{}", r->step);
      longest_y2 = std::max(longest_y2, label.size());
      y2tics += fmt::format("{}\"{}\" {}", y2tics.empty() ? "" : ", ", label, row);
    }
    ++row;
  }
  s += "set ytics (" + ytics + ")\n";
  s += "set y2tics (" + y2tics + ")\n";
  // Right of the heatmap: the y2 labels (~8-9 px a character at 12 pt), a gap, then the colour box, its tic labels
  // (the title says what the colour is) in the last box_px.
  std::string cbtics;
  size_t longest_cb = 0;
  for (int k = 0; k <= 4; ++k) {
    const double v = cb_max * 100 * k / 4;
    std::string label = fmt::format("{:.3g}%%", v);  // tic labels are formats: %% is a percent sign
    if (k == 2) label += " = 1/" + std::to_string(experts);
    if (k == 4 && capped) label = "\u2265 " + label;
    longest_cb = std::max(longest_cb, label.size() - 1);  // %% prints as one character
    cbtics += fmt::format("{}\"{}\" {}", k ? ", " : "", label, num(v));
  }
  const double box_px = 50 + 9.0 * static_cast<double>(longest_cb);
  const double label_px = 24 + 8.5 * static_cast<double>(longest_y2);
  s += fmt::format("set lmargin 9\nset rmargin at screen {:.3f}\n", 1.0 - (box_px + label_px + 12) / f.width);
  s += fmt::format("set colorbox user origin screen {:.3f}, graph 0 size screen {:.3f}, graph 1\n",
                   1.0 - box_px / f.width, 22.0 / f.width);
  // The colour axis holds share * 100 (percent).
  s += fmt::format("set cbrange [0:{}]\n", num(cb_max * 100));
  s += "set cbtics (" + cbtics + ") scale 0.5\n";
  s += "set palette defined (0 '#2166ac', 0.5 '#f7f7f7', 1 '#b2182b')\n";
  // Cells as filled boxes (not `with image`, which needs at least two rows and two columns).
  s += "set style fill solid 1.0 noborder\n";
  const std::string ld = sq("expert_load.dat");
  s += "plot " + ld + " using 1:2:(0.5):(0.5):($3*100) with boxxyerror fc palette notitle";
  if (labels)
    s += ", \\\n     " + ld +
         fmt::format(" using 1:2:(sprintf('%.1f', $3*100)):4 with labels tc rgb variable font ',{}' notitle",
                     experts <= 16 ? 10 : 8);
  s += "\n";
  p.draw(f);
}

void plot_max_vio(Plotter& p, const Metrics& m) {
  std::map<int64_t, std::map<int64_t, double>> by_layer;  // layer -> step -> max_vio (last record wins)
  for (const auto& r : m.moe) {
    double vio = r.max_vio;
    if (!std::isfinite(vio)) {
      double sum = 0, mx = 0;
      for (double t : r.tokens_per_expert) sum += t, mx = std::max(mx, t);
      if (sum > 0) vio = mx / (sum / static_cast<double>(r.tokens_per_expert.size())) - 1;
    }
    by_layer[r.layer][r.step] = vio;
  }
  std::set<int64_t> steps;
  for (const auto& [layer, series] : by_layer)
    for (const auto& [step, vio] : series) steps.insert(step);
  if (steps.size() < 2) {
    if (!m.moe.empty()) p.note("max_vio.png: moe telemetry at a single step, not drawn");
    return;
  }
  Figure f{"max_vio", 1000, 600, ""};
  std::string& s = f.script;
  const size_t layers = by_layer.size();
  s += "set title " + dq(p.run + ": expert load imbalance per MoE layer") + " font ',15'\n";
  s += "set xlabel 'step'\nset ylabel 'max_vio  (max load / mean load - 1)'\nset yrange [0:*]\n";
  s += "set offsets 0, 0, graph 0.25, 0\n";  // headroom for the key
  s += "set lmargin 11\nset rmargin 3\nset key top right\n";
  s += xrange(*steps.begin(), *steps.rbegin());
  const std::string vd = sq("max_vio.dat");
  std::string dat;
  if (layers <= 8) {  // one line per layer
    for (const auto& [layer, series] : by_layer) {
      dat += fmt::format("# layer {}\n", layer);
      for (const auto& [step, vio] : series) dat += fmt::format("{} {}\n", step, num(vio));
      dat += "\n\n";
    }
    s += "set palette defined (0 '#440154', 0.5 '#21918c', 1 '#fde725')\nunset colorbox\n";
    s += "plot ";
    size_t i = 0;
    for (const auto& [layer, series] : by_layer) {
      const double frac = layers > 1 ? 0.85 * static_cast<double>(i) / static_cast<double>(layers - 1) : 0;
      s += fmt::format("{}{} index {} using 1:2 {} lw 2 lc palette frac {:.3f} title 'layer {}'",
                       i ? ", \\\n     " : "", vd, i, "with linespoints pt 7 ps 0.7", frac, layer);
      ++i;
    }
  } else {  // too many layers for a line each: the range over layers, their mean, and the worst layer
    dat += "# step min mean max worst_layer\n";
    int64_t worst_layer = 0;
    double worst = -1;
    for (int64_t step : steps) {
      double lo = kNaN, hi = kNaN, sum = 0;
      int64_t n = 0, arg = 0;
      for (const auto& [layer, series] : by_layer) {
        const auto it = series.find(step);
        if (it == series.end() || !std::isfinite(it->second)) continue;
        const double v = it->second;
        if (n == 0 || v < lo) lo = v;
        if (n == 0 || v > hi) hi = v, arg = layer;
        sum += v, ++n;
      }
      dat += fmt::format("{} {} {} {} {}\n", step, num(lo), num(n ? sum / n : kNaN), num(hi), arg);
      if (n > 0 && step == *steps.rbegin()) worst = hi, worst_layer = arg;
    }
    // Room beside the first and last steps for the worst-layer labels.
    const double pad = 0.03 * static_cast<double>(*steps.rbegin() - *steps.begin());
    s += fmt::format("set xrange [{}:{}]\n", static_cast<double>(*steps.begin()) - pad,
                     static_cast<double>(*steps.rbegin()) + pad);
    s += "plot " + vd + " using 1:2:4 with filledcurves fc rgb '#c6dbef' fs solid 1.0 title " +
         dq(fmt::format("min - max over {} layers (label: the worst layer)", layers)) + ", \\\n     " + vd +
         " using 1:4 with lines lc rgb '#6baed6' lw 1 notitle, \\\n     " + vd +
         " using 1:4:(sprintf('%d', $5)) with labels offset 0,0.7 tc rgb '#08519c' font ',9' notitle, \\\n     " + vd +
         " using 1:3 with linespoints pt 7 ps 0.7 lc rgb '#08519c' lw 2.5 title 'mean over layers'";
    if (worst >= 0)
      s += ", \\\n     NaN with points pt -1 title " +
           dq(fmt::format("worst at step {}: layer {} ({:.2f})", *steps.rbegin(), worst_layer, worst));
  }
  write_text(p.data("max_vio.dat"), dat);
  s += "\n";
  p.draw(f);
}

void plot_lr(Plotter& p, const Metrics& m) {
  const bool lr = any_finite(m.train, &TrainRecord::lr), grad = any_finite(m.train, &TrainRecord::grad_norm);
  if (!lr) {
    p.note("lr.png: no lr values in the train records, not drawn");
    return;
  }
  std::string dat = "# step lr grad_norm\n";
  for (const auto& r : m.train) dat += fmt::format("{} {} {}\n", r.step, num(r.lr), num(r.grad_norm));
  write_text(p.data("lr.dat"), dat);
  Figure f{"lr", 1000, grad ? 720 : 600, ""};
  std::string& s = f.script;
  const std::string d = sq("lr.dat");
  s += xrange(m.train.front().step, m.train.back().step);
  s += "set lmargin 12\nset rmargin 3\nset key top right\n";
  s += "set title " + dq(p.run + (grad ? ": learning rate and gradient norm" : ": learning rate")) + " font ',15'\n";
  s += "set ylabel 'learning rate'\nset format y '%.1e'\nset yrange [0:*]\n";
  if (grad)
    s += "set multiplot\nset tmargin at screen 0.92\nset bmargin at screen 0.50\nset format x ''\n";
  else
    s += "set xlabel 'step'\n";
  s += "plot " + d + " using 1:2 " + with_lines(m.train.size()) + " lc rgb '#6a51a3' lw 2.5 title 'lr'\n";
  if (grad) {
    s += "unset title\nset tmargin at screen 0.46\nset bmargin at screen 0.09\n";
    s += "set format x '% h'\nset xlabel 'step'\nset format y '% h'\nset ylabel 'gradient norm'\n";
    if (const double step = tic_step(m.train, &TrainRecord::grad_norm, 5); step > 0)
      s += fmt::format("set ytics {}\n", num(step));
    s += "plot " + d + " using 1:3 " + with_lines(m.train.size()) +
         " lc rgb '#cb181d' lw 1.5 title 'grad norm (before clipping)'\n";
    s += "unset multiplot\n";
  }
  p.draw(f);
}

void plot_throughput(Plotter& p, const Metrics& m) {
  std::vector<double> tps;
  for (const auto& r : m.train)
    if (std::isfinite(r.tokens_per_s)) tps.push_back(r.tokens_per_s);
  if (tps.empty()) {
    p.note("throughput.png: no tokens_per_s values in the train records, not drawn");
    return;
  }
  std::nth_element(tps.begin(), tps.begin() + tps.size() / 2, tps.end());
  const double median = tps[tps.size() / 2];
  std::string dat = "# step tokens_per_s\n";
  for (const auto& r : m.train) dat += fmt::format("{} {}\n", r.step, num(r.tokens_per_s));
  write_text(p.data("throughput.dat"), dat);
  Figure f{"throughput", 1000, 600, ""};
  std::string& s = f.script;
  s += xrange(m.train.front().step, m.train.back().step);
  s += "set lmargin 11\nset rmargin 3\nset key bottom right\n";
  s += "set title " + dq(p.run + ": training throughput") + " font ',15'\n";
  s += "set xlabel 'step'\nset ylabel 'tokens / s'\nset yrange [0:*]\n";
  s += "plot " + sq("throughput.dat") + " using 1:2 " + with_lines(m.train.size()) + " lc rgb '#2171b5' lw 2 title " +
       dq(fmt::format("tokens/s (median {:.0f})", median)) +
       fmt::format(", {} with lines lc rgb '#888888' dt 2 lw 1.5 notitle\n", num(median));
  p.draw(f);
}

}  // namespace

Metrics read_metrics(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  check(in.good(), "cannot open {}", path);
  std::map<int64_t, TrainRecord> train;
  std::map<int64_t, EvalRecord> eval;
  Metrics m;
  std::string line;
  int64_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (is_blank(line)) continue;
    const LineContext at{path, line_no};
    json j;
    try {
      j = json::parse(line);
    } catch (const json::exception& e) {
      if (in.eof()) {  // an unterminated last line: the run is still writing it
        m.incomplete_line = line_no;
        break;
      }
      fail("{}:{}: malformed JSON: {}", path, line_no, short_reason(e.what()));
    }
    check(j.is_object(), "{}:{}: expected a JSON object, got {}", path, line_no, j.type_name());
    const auto type_it = j.find("type");
    if (type_it == j.end() || !type_it->is_string()) continue;  // not a record this reader knows
    const std::string type = type_it->get<std::string>();
    if (type == "train") {
      TrainRecord r;
      r.step = required_integer(j, "step", type, at);
      r.loss = number_or_nan(j, "loss", at);
      r.balance = number_or_nan(j, "balance", at);
      r.lr = number_or_nan(j, "lr", at);
      r.grad_norm = number_or_nan(j, "grad_norm", at);
      r.tokens_per_s = number_or_nan(j, "tokens_per_s", at);
      train[r.step] = r;
    } else if (type == "eval") {
      EvalRecord r;
      r.step = required_integer(j, "step", type, at);
      r.val_loss = number_or_nan(j, "val_loss", at);
      eval[r.step] = r;
    } else if (type == "moe") {
      MoeRecord r;
      r.step = required_integer(j, "step", type, at);
      r.layer = required_integer(j, "layer", type, at);
      const auto t = j.find("tokens_per_expert");
      check(t != j.end(), "{}:{}: moe record without \"tokens_per_expert\"", path, line_no);
      check(t->is_array() && !t->empty(), "{}:{}: \"tokens_per_expert\" must be a non-empty array of numbers", path,
            line_no);
      for (const json& x : *t) {
        check(x.is_number() && x.get<double>() >= 0 && std::isfinite(x.get<double>()),
              "{}:{}: \"tokens_per_expert\" must hold non-negative numbers, got {}", path, line_no, x.dump());
        r.tokens_per_expert.push_back(x.get<double>());
      }
      r.max_vio = number_or_nan(j, "max_vio", at);
      m.moe.push_back(std::move(r));
    }
  }
  check(!in.bad(), "read error in {}", path);
  for (auto& [step, r] : train) m.train.push_back(r);
  for (auto& [step, r] : eval) m.eval.push_back(r);
  return m;
}

PlotResult plot_run(const std::string& run_dir) {
  check(fs::is_directory(run_dir), "run directory {} does not exist", run_dir);
  const fs::path metrics_path = fs::path(run_dir) / "metrics.jsonl";
  check(fs::is_regular_file(metrics_path), "{} not found: not a training run directory", metrics_path.string());
  const Metrics m = read_metrics(metrics_path.string());
  check(!m.train.empty(), "{}: no train records, nothing to plot", metrics_path.string());
  check(any_finite(m.train, &TrainRecord::loss), "{}: no finite train loss in {} train records", metrics_path.string(),
        m.train.size());

  Plotter p;
  if (m.incomplete_line > 0)
    p.note(fmt::format("{}:{}: incomplete last line (the run is still writing it), skipped", metrics_path.string(),
                       m.incomplete_line));
  p.dir = fs::path(run_dir) / "plots";
  std::error_code ec;
  fs::create_directories(p.dir, ec);
  check(!ec, "cannot create {}: {}", p.dir.string(), ec.message());
  p.run = fs::weakly_canonical(fs::absolute(run_dir)).filename().string();
  if (p.run.empty()) p.run = run_dir;
  if (p.run.size() > 36) {  // titles fit: keep both ends, cut on UTF-8 character boundaries
    auto cont = [&](size_t i) { return (static_cast<unsigned char>(p.run[i]) & 0xC0) == 0x80; };
    size_t head = 16, tail = p.run.size() - 16;
    while (head > 0 && cont(head)) --head;
    while (tail < p.run.size() && cont(tail)) ++tail;
    p.run = p.run.substr(0, head) + "..." + p.run.substr(tail);
  }
  write_text(p.dir / "gnuplot.log", "");

  plot_loss(p, m);
  plot_expert_load(p, m);
  plot_max_vio(p, m);
  plot_lr(p, m);
  plot_throughput(p, m);
  return p.result;
}

}  // namespace dsmoe::report
