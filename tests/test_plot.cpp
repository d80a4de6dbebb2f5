// dsmoe plot: metrics.jsonl parsing, the figures gnuplot draws from it (real PNGs, checked by signature and IHDR
// size), skipped figures, and the errors (malformed line with file:line, empty run dir, no train records, no gnuplot).
// Set DSMOE_KEEP_PLOTS=1 to keep the synthetic run directory (its path is printed) and look at the figures.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "expect_error.h"
#include "report/plot.h"

namespace fs = std::filesystem;
using namespace dsmoe::report;
using nlohmann::json;

namespace {

struct TempDir {
  fs::path path;
  bool keep = std::getenv("DSMOE_KEEP_PLOTS") != nullptr;
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path = fs::temp_directory_path() /
           fmt::format("dsmoe_plot_{}_{}_{}", info->test_suite_name(), info->name(), static_cast<long>(::getpid()));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    if (keep) {
      fmt::print("kept {}\n", path.string());
      return;
    }
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

void write_file(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary);
  out << content;
}

// A plausible run: 400 steps of decaying noisy loss, eval every 50 steps, 3 MoE layers x 16 experts of telemetry
// every 50 steps whose imbalance shrinks over training (layer 3 keeps one dead expert), plus records to ignore.
std::string synthetic_metrics() {
  std::mt19937 rng(7);
  std::normal_distribution<double> noise(0.0, 1.0);
  std::string out = json{{"type", "config"}, {"model", "tiny"}, {"n_routed_experts", 16}}.dump() + "\n";
  const int steps = 400, experts = 16;
  for (int step = 1; step <= steps; ++step) {
    const double t = step / static_cast<double>(steps);
    const double loss = 2.6 + 8.0 * std::exp(-step / 40.0) + 0.6 * std::exp(-step / 250.0) + 0.08 * noise(rng);
    const double lr = step <= 40 ? 1e-3 * step / 40 : 1e-4 + 0.5 * 9e-4 * (1 + std::cos(M_PI * (step - 40) / 360.0));
    out += json{{"type", "train"},
                {"step", step},
                {"loss", loss},
                {"balance", 0.012 + 0.02 * std::exp(-step / 60.0) + 0.001 * noise(rng)},
                {"lr", lr},
                {"grad_norm", 0.6 + 2.0 * std::exp(-step / 30.0) + 0.05 * std::abs(noise(rng))},
                {"tokens_per_s", 4100 + 150 * noise(rng) - (step == 1 ? 2500 : 0)},
                {"future_field", {1, 2}}}
               .dump() +
           "\n";
    if (step % 50 == 0) {
      out += json{{"type", "eval"},
                  {"step", step},
                  {"val_loss", 2.75 + 8.0 * std::exp(-step / 40.0) + 0.7 * t},
                  {"val_ppl", 0}}
                 .dump() +
             "\n";
      for (int layer = 1; layer <= 3; ++layer) {
        std::vector<int64_t> tokens(experts);
        const double skew = (1.5 - t) * (0.5 + 0.3 * layer);
        double sum = 0, mx = 0;
        for (int e = 0; e < experts; ++e) {
          double w = std::exp(skew * std::sin(1.7 * e + layer) + 0.1 * noise(rng));
          if (layer == 3 && e == 11) w = 0;  // a dead expert
          tokens[e] = std::llround(1000 * w);
          sum += tokens[e], mx = std::max(mx, static_cast<double>(tokens[e]));
        }
        out += json{{"type", "moe"},
                    {"step", step},
                    {"layer", layer},
                    {"tokens_per_expert", tokens},
                    {"max_vio", mx / (sum / experts) - 1},
                    {"dead_experts", layer == 3 ? 1 : 0},
                    {"router_entropy", 2.7},
                    {"dropped_pct", 0.0}}
                   .dump() +
               "\n";
      }
    }
  }
  out += json{{"type", "done"}, {"step", steps}}.dump() + "\n";
  return out;
}

struct PngInfo {
  bool signature = false;
  uint32_t width = 0, height = 0;
  uintmax_t bytes = 0;
};

uint32_t big_endian(const unsigned char* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}

PngInfo read_png(const std::string& path) {
  PngInfo info;
  std::ifstream in(path, std::ios::binary);
  unsigned char head[24] = {};
  in.read(reinterpret_cast<char*>(head), sizeof head);
  if (in.gcount() != sizeof head) return info;
  static const unsigned char kSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  info.signature = std::equal(kSignature, kSignature + 8, head) && std::string(head + 12, head + 16) == "IHDR";
  info.width = big_endian(head + 16);
  info.height = big_endian(head + 20);
  info.bytes = fs::file_size(path);
  return info;
}

bool has_note(const PlotResult& r, const std::string& part) {
  for (const auto& n : r.notes)
    if (n.find(part) != std::string::npos) return true;
  return false;
}

}  // namespace

TEST(Plot, DrawsEveryFigureOfARun) {
  TempDir dir;
  write_file(dir.file("metrics.jsonl"), synthetic_metrics());
  const PlotResult r = plot_run(dir.path.string());
  const std::vector<std::string> expected = {"loss", "expert_load", "max_vio", "lr", "throughput"};
  ASSERT_EQ(r.files.size(), expected.size()) << fmt::format("{}", fmt::join(r.notes, "; "));
  EXPECT_TRUE(r.notes.empty()) << fmt::format("{}", fmt::join(r.notes, "; "));
  for (size_t i = 0; i < expected.size(); ++i) {
    const std::string png = (dir.path / "plots" / (expected[i] + ".png")).string();
    EXPECT_EQ(r.files[i], png);
    ASSERT_TRUE(fs::exists(png)) << png;
    const PngInfo info = read_png(png);
    EXPECT_TRUE(info.signature) << png;
    EXPECT_EQ(info.width, 1000u) << png;
    EXPECT_GE(info.height, 400u) << png;
    EXPECT_LE(info.height, 1200u) << png;
    EXPECT_GT(info.bytes, 10000u) << png << ": too small to hold a drawn figure";
    EXPECT_TRUE(fs::exists(dir.path / "plots" / (expected[i] + ".gp"))) << "script beside " << png;
  }
  EXPECT_EQ(read_png(r.files[0]).height, 720u);  // loss + balance panel
}

TEST(Plot, SkipsFiguresWhoseRecordsAreMissing) {
  TempDir top;
  const fs::path run = top.path / "a run's \"dir\"";  // quotes and a space survive the gnuplot scripts
  fs::create_directories(run);
  std::string text;
  for (int step = 0; step < 30; ++step)
    text += fmt::format("{{\"type\": \"train\", \"step\": {}, \"loss\": {}}}\n", step, 5.0 - 0.1 * step);
  write_file((run / "metrics.jsonl").string(), text);
  const PlotResult r = plot_run(run.string());
  ASSERT_EQ(r.files.size(), 1u);
  EXPECT_EQ(fs::path(r.files[0]).filename(), "loss.png");
  EXPECT_TRUE(read_png(r.files[0]).signature);
  EXPECT_EQ(read_png(r.files[0]).height, 600u);  // no balance panel
  EXPECT_TRUE(has_note(r, "no eval records"));
  EXPECT_TRUE(has_note(r, "balance"));
  EXPECT_TRUE(has_note(r, "expert_load.png: no moe records"));
  EXPECT_TRUE(has_note(r, "lr.png"));
  EXPECT_TRUE(has_note(r, "throughput.png"));
  EXPECT_FALSE(fs::exists(run / "plots" / "expert_load.png"));
}

TEST(Plot, ReadsRecordsIgnoringUnknownOnes) {
  TempDir dir;
  write_file(dir.file("metrics.jsonl"),
             "{\"run\": \"header without a type\"}\n"
             "\n"
             "{\"type\": \"train\", \"step\": 2, \"loss\": 3.0, \"extra\": {\"a\": 1}}\n"
             "{\"type\": \"train\", \"step\": 1, \"loss\": 4.0, \"lr\": 0.001}\n"
             "{\"type\": \"train\", \"step\": 2, \"loss\": null}\n"
             "{\"type\": \"checkpoint\", \"step\": 2, \"path\": \"x\"}\n"
             "{\"type\": \"eval\", \"step\": 2, \"val_loss\": 3.5}\n"
             "{\"type\": \"moe\", \"step\": 2, \"layer\": 1, \"tokens_per_expert\": [1, 3]}\n");
  const Metrics m = read_metrics(dir.file("metrics.jsonl"));
  ASSERT_EQ(m.train.size(), 2u);
  EXPECT_EQ(m.train[0].step, 1);
  EXPECT_DOUBLE_EQ(m.train[0].loss, 4.0);
  EXPECT_DOUBLE_EQ(m.train[0].lr, 0.001);
  EXPECT_TRUE(std::isnan(m.train[0].balance));
  EXPECT_EQ(m.train[1].step, 2);
  EXPECT_TRUE(std::isnan(m.train[1].loss));  // the step logged again (a resumed run): the last record wins
  ASSERT_EQ(m.eval.size(), 1u);
  EXPECT_DOUBLE_EQ(m.eval[0].val_loss, 3.5);
  ASSERT_EQ(m.moe.size(), 1u);
  EXPECT_EQ(m.moe[0].tokens_per_expert, (std::vector<double>{1, 3}));
  EXPECT_TRUE(std::isnan(m.moe[0].max_vio));
}

TEST(Plot, MalformedLineNamesFileAndLine) {
  TempDir dir;
  write_file(dir.file("metrics.jsonl"),
             "{\"type\": \"train\", \"step\": 1, \"loss\": 4.0}\n"
             "{\"type\": \"train\", \"step\": 2, \"loss\": 3.9}\n"
             "{\"type\": \"train\", \"step\": 3, \"loss\": \n");
  expect_error([&] { plot_run(dir.path.string()); }, {"metrics.jsonl:3:", "malformed JSON"});
  write_file(dir.file("metrics.jsonl"), "{\"type\": \"train\", \"step\": 1, \"loss\": 4.0}\n{\"typ\n{\"type\": 1}\n");
  expect_error([&] { plot_run(dir.path.string()); }, {"metrics.jsonl:2:", "malformed JSON"});
  write_file(dir.file("metrics.jsonl"), "{\"type\": \"train\", \"step\": 1, \"loss\": 4.0}\n[1, 2]\n");
  expect_error([&] { plot_run(dir.path.string()); }, {"metrics.jsonl:2:", "expected a JSON object"});
  write_file(dir.file("metrics.jsonl"), "{\"type\": \"train\", \"step\": 1, \"loss\": \"4.0\"}\n");
  expect_error([&] { plot_run(dir.path.string()); }, {"metrics.jsonl:1:", "\"loss\" must be a number"});
  write_file(dir.file("metrics.jsonl"),
             "{\"type\": \"train\", \"step\": 1, \"loss\": 4.0}\n{\"type\": \"moe\", \"step\": 1, \"layer\": 1}\n");
  expect_error([&] { plot_run(dir.path.string()); }, {"metrics.jsonl:2:", "tokens_per_expert"});
  write_file(dir.file("metrics.jsonl"), "{\"type\": \"eval\", \"val_loss\": 3.0}\n");
  expect_error([&] { plot_run(dir.path.string()); }, {"metrics.jsonl:1:", "eval record without \"step\""});
}

TEST(Plot, EmptyRunDirectoryIsAnError) {
  TempDir dir;
  expect_error([&] { plot_run(dir.path.string()); }, {"metrics.jsonl", "not found"});
  expect_error([&] { plot_run(dir.file("no_such_run")); }, {"no_such_run", "does not exist"});
  write_file(dir.file("metrics.jsonl"), "");
  expect_error([&] { plot_run(dir.path.string()); }, {"metrics.jsonl", "no train records"});
  write_file(dir.file("metrics.jsonl"), "{\"type\": \"eval\", \"step\": 5, \"val_loss\": 3.0}\n");
  expect_error([&] { plot_run(dir.path.string()); }, {"metrics.jsonl", "no train records"});
}

TEST(Plot, MissingGnuplotIsAClearError) {
  TempDir dir;
  write_file(dir.file("metrics.jsonl"), "{\"type\": \"train\", \"step\": 1, \"loss\": 4.0}\n");
  ::setenv("DSMOE_GNUPLOT", dir.file("no_gnuplot_here").c_str(), 1);
  expect_error([&] { plot_run(dir.path.string()); }, {"gnuplot not found", "apt-get install gnuplot-nox"});
  ::unsetenv("DSMOE_GNUPLOT");
}

TEST(Plot, FailingGnuplotNamesTheScript) {
  TempDir dir;
  write_file(dir.file("metrics.jsonl"), "{\"type\": \"train\", \"step\": 1, \"loss\": 4.0}\n");
  ::setenv("DSMOE_GNUPLOT", "/bin/false", 1);
  expect_error([&] { plot_run(dir.path.string()); }, {"gnuplot failed on", "loss.gp", "exit status 1"});
  ::unsetenv("DSMOE_GNUPLOT");
}

TEST(Plot, SkipsTheLineALiveRunIsWriting) {
  TempDir dir;
  write_file(dir.file("metrics.jsonl"),
             "{\"type\": \"train\", \"step\": 1, \"loss\": 4.0}\n{\"type\": \"train\", \"step\": 2, \"lo");
  const PlotResult r = plot_run(dir.path.string());
  ASSERT_EQ(r.files.size(), 1u);
  EXPECT_TRUE(has_note(r, "metrics.jsonl:2: incomplete last line"));
}
