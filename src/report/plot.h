// dsmoe plot RUN — figures of a training run, drawn by gnuplot from RUN/metrics.jsonl.
//
// RUN/metrics.jsonl holds one JSON object per line, written by the training loop; the records read here are
//   {"type": "train", "step": 12, "loss": 3.21, "balance": 0.013, "lr": 0.001, "grad_norm": 0.8, "tokens_per_s": 4100}
//   {"type": "eval",  "step": 50, "val_loss": 3.05, ...}
//   {"type": "moe",   "step": 50, "layer": 1, "tokens_per_expert": [12, 40, ...], "max_vio": 0.42, ...}
// Unknown fields and record types are ignored; blank lines are skipped; a line that is not a JSON object, or a
// known record with a missing/mistyped required field, is an error naming FILE:LINE — except an unparsable last
// line without its newline (a live run writing it), which is skipped with a note. A step that appears twice
// (a resumed run) keeps its last record. Non-numbers (null, as NaN is written) leave a gap in the curves.
//
// Figures, written into RUN/plots/ as PNG (gnuplot's pngcairo terminal, or libgd's png where cairo is absent):
//   loss.png         train loss (raw + smoothed) and val loss vs step; balance loss in a panel below
//   expert_load.png  heatmap: MoE layer x routed expert, colour = share of the layer's routed tokens at its last
//                    telemetry record (white = uniform 1/E), max_vio per layer on the right
//   max_vio.png      max_vio vs step, one line per MoE layer (when telemetry spans more than one step)
//   lr.png           learning rate vs step (grad norm in a panel below when logged)
//   throughput.png   tokens/s vs step
// Beside each figure: its data (*.dat) and script (*.gp), so `gnuplot RUN/plots/loss.gp` redraws it, and
// gnuplot's own output in RUN/plots/gnuplot.log. A figure whose records are missing is skipped with a note.
// The gnuplot binary is `gnuplot` on PATH, or $DSMOE_GNUPLOT.
#pragma once
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace dsmoe::report {

inline constexpr double kAbsent = std::numeric_limits<double>::quiet_NaN();  // a value a record did not give

struct TrainRecord {
  int64_t step = 0;
  double loss = kAbsent, balance = kAbsent, lr = kAbsent, grad_norm = kAbsent, tokens_per_s = kAbsent;
};

struct EvalRecord {
  int64_t step = 0;
  double val_loss = kAbsent;
};

struct MoeRecord {
  int64_t step = 0;
  int64_t layer = 0;
  std::vector<double> tokens_per_expert;
  double max_vio = kAbsent;
};

struct Metrics {
  std::vector<TrainRecord> train;  // sorted by step, one per step (the last one logged)
  std::vector<EvalRecord> eval;    // sorted by step, one per step
  std::vector<MoeRecord> moe;      // file order
  int64_t incomplete_line = 0;     // an unterminated, unparsable last line (a run writing it now), skipped: its number
};

// Parse a metrics.jsonl file (see above); errors name path:line.
Metrics read_metrics(const std::string& path);

struct PlotResult {
  std::vector<std::string> files;  // the PNGs written, RUN/plots/NAME.png
  std::vector<std::string> notes;  // figures or curves skipped, and why
};

// Draw the figures of RUN (a directory holding metrics.jsonl) into RUN/plots/. No train records, a malformed
// metrics line, gnuplot missing or failing: dsmoe::Error.
PlotResult plot_run(const std::string& run_dir);

}  // namespace dsmoe::report
