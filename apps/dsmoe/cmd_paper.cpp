// The paper-suite commands of the dsmoe CLI: ablate (the Figure 3 ladder) and analyze (the §4.5 analyses).
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "core/error.h"
#include "paper/ablation.h"
#include "paper/analysis.h"
#include "train/run.h"

namespace dsmoe::cli {

namespace fs = std::filesystem;

namespace {

std::string exe_dir() {
  std::error_code ec;
  const fs::path p = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string() : p.parent_path().string();
}

// "a,b" and repeated flags -> one list.
std::vector<std::string> split_commas(const std::vector<std::string>& raw) {
  std::vector<std::string> out;
  for (const auto& r : raw)
    for (auto& p : split_paths(r)) out.push_back(std::move(p));
  return out;
}

// "dsmoe NAME --flag value ..." from the options the user gave (recorded in reports).
std::string command_line_of(const std::string& name, const CLI::App* cmd) {
  std::string cl = fmt::format("dsmoe {}", name);
  for (const auto& opt : cmd->get_options()) {
    if (opt->count() == 0 || opt->get_name() == "--help") continue;
    if (opt->get_expected_min() == 0) {
      cl += fmt::format(" {}", opt->get_name());
      continue;
    }
    for (const auto& v : opt->results()) cl += fmt::format(" {} {}", opt->get_name(), v);
  }
  return cl;
}

struct AblateArgs {
  bool quick = false, gshard_x15 = false, seq_aux = false;
  std::string out, val_data;
  std::vector<std::string> data;
  int64_t seeds = 2;
  // Scale overrides (0 = the mode's default).
  int64_t hidden = 0, layers = 0, heads = 0, steps = 0, seq_len = 0, batch = 0, vocab = 0, data_bytes = -1;
  double lr = 0;
};

}  // namespace

void add_paper_commands(CLI::App& app, std::vector<Command>& commands) {
  auto a = std::make_shared<AblateArgs>();
  auto command_line = std::make_shared<std::string>();
  CLI::App* ab = app.add_subcommand(
      "ablate",
      "the paper's Figure 3 ladder at CPU scale: GShard -> +shared expert -> m=2 -> m=4 (+ dense), same "
      "total and activated parameters, several seeds; writes OUT/ablation.json, OUT/report.md and plots");
  ab->add_flag("--quick", a->quick, "a tiny ladder (about a minute on 2 cores): checks the pipeline, not the claim");
  ab->add_option("--out", a->out, "output directory (runs, data, ablation.json, report.md); rerun to continue")
      ->required();
  ab->add_option("--data", a->data,
                 "text/JSONL files or directories, or one token file (.bin), comma-separated or repeated "
                 "(default: the Brown corpus, see README)");
  ab->add_option("--val-data", a->val_data, "validation token file (with token-file --data)");
  ab->add_option("--seeds", a->seeds, "runs per variant (different init and data order)")
      ->check(CLI::Range(int64_t{1}, int64_t{100}));
  ab->add_flag("--gshard-x1.5", a->gshard_x15, "also train GShard x1.5 (16 experts of 1.5 W, top-2)");
  ab->add_option("--hidden", a->hidden, "model width d (default 128; quick 64)")->check(CLI::PositiveNumber);
  ab->add_option("--layers", a->layers, "layers (default 4; quick 2)")->check(CLI::PositiveNumber);
  ab->add_option("--heads", a->heads, "attention heads (default 4; quick 2)")->check(CLI::PositiveNumber);
  ab->add_option("--steps", a->steps, "optimizer steps per run (default 1400; quick 60)")->check(CLI::PositiveNumber);
  ab->add_option("--seq-len", a->seq_len, "sequence length (default 128; quick 64)")->check(CLI::PositiveNumber);
  ab->add_option("--batch", a->batch, "sequences per step (default 16; quick 8)")->check(CLI::PositiveNumber);
  ab->add_option("--lr", a->lr, "peak learning rate (default 3e-3)")->check(CLI::PositiveNumber);
  ab->add_option("--vocab", a->vocab, "BPE vocabulary trained on text data (default 4096; quick 512)")
      ->check(CLI::Range(int64_t{256}, int64_t{1} << 20));
  ab->add_flag("--seq-aux", a->seq_aux, "expert-level balance loss per sequence (HF seq_aux) instead of per batch");
  ab->add_option("--data-bytes", a->data_bytes, "use only the first N bytes of the text (default all; quick 400000)")
      ->check(CLI::NonNegativeNumber);
  commands.push_back({ab, [a, ab] {
                        paper::AblationOptions o;
                        o.out_dir = a->out;
                        o.data = split_commas(a->data);
                        if (o.data.empty()) o.data = {paper::find_brown_corpus(exe_dir())};
                        o.val_data = a->val_data;
                        o.seeds = a->seeds;
                        o.quick = a->quick;
                        o.gshard_x15 = a->gshard_x15;
                        o.scale = a->quick ? paper::AblationScale::quick() : paper::AblationScale::full();
                        paper::AblationScale& s = o.scale;
                        if (a->hidden) s.hidden = a->hidden;
                        if (a->layers) s.layers = a->layers;
                        if (a->heads) s.heads = a->heads;
                        if (a->steps) s.steps = a->steps, s.warmup = std::max<int64_t>(1, a->steps / 20);
                        if (a->seq_len) s.seq_len = a->seq_len;
                        if (a->batch) s.batch = a->batch;
                        if (a->lr > 0) s.lr = a->lr;
                        if (a->vocab) s.vocab = a->vocab;
                        if (a->data_bytes >= 0) s.data_bytes = a->data_bytes;
                        if (a->seq_aux) s.seq_aux = true;
                        o.command_line = command_line_of("ablate", ab);
                        paper::run_ablation(o);
                        return 0;
                      }});

  auto z = std::make_shared<paper::AnalysisOptions>();
  auto ablation_dir = std::make_shared<std::string>();
  CLI::App* an = app.add_subcommand(
      "analyze",
      "the paper's specialisation analyses on trained models: shared experts removed, top routed experts "
      "masked, fewer activated experts, expert usage per domain; writes OUT/analysis.json, OUT/report.md, "
      "plots");
  an->add_option("--model", z->models, "model directory (repeat to compare, e.g. DeepSeekMoE and GShard)");
  an->add_option("--name", z->names, "a label per --model (default: from the path)");
  an->add_option("--data", z->data, "token file (.bin) or text/JSONL files (comma-separated) for the losses");
  an->add_option("--domains", z->domains, "JSONL with \"text\" and \"domain\", or a synthetic corpus (sidecar .json)");
  an->add_option("--tokenizer", z->tokenizer, "tokenizer for text (default: the first model's directory)");
  an->add_option("--ablation", *ablation_dir,
                 "an `ablate` output directory: analyse its m4, gshard (and gshard-x1.5) seed-1 models on its "
                 "validation tokens with its tokenizer");
  an->add_option("--seq-len", z->seq_len, "evaluation window (default 128)")->check(CLI::Range(2, 1 << 20));
  an->add_option("--batch", z->batch, "windows per forward (default 8)")->check(CLI::PositiveNumber);
  an->add_option("--max-tokens", z->max_tokens, "tokens per loss and per domain (default 262144)")
      ->check(CLI::PositiveNumber);
  an->add_option("--out", z->out_dir, "output directory")->required();
  commands.push_back({an, [z, an, ablation_dir] {
                        paper::AnalysisOptions o = *z;
                        if (!ablation_dir->empty()) {
                          const fs::path d = *ablation_dir;
                          check(fs::exists(d / "ablation.json"),
                                "--ablation {}: no ablation.json (run `dsmoe ablate "
                                "--out {}` first)",
                                d.string(), d.string());
                          if (o.models.empty()) {
                            for (const char* v : {"m4", "gshard", "gshard-x1.5"}) {
                              const fs::path m = d / "runs" / (std::string(v) + "-seed1") / "latest";
                              if (fs::exists(m)) o.models.push_back(m.string()), o.names.push_back(v);
                            }
                          }
                          if (o.data.empty()) o.data = (d / "data" / "corpus.val.bin").string();
                          if (o.tokenizer.empty()) o.tokenizer = (d / "data" / "tokenizer").string();
                          if (!an->count("--seq-len")) {
                            std::ifstream in(d / "settings.json");
                            const nlohmann::json s = nlohmann::json::parse(in, nullptr, false);
                            if (s.is_object() && s.contains("scale"))
                              o.seq_len = s["scale"].value("seq_len", o.seq_len);
                          }
                        }
                        o.command_line = command_line_of("analyze", an);
                        paper::run_analysis(o);
                        return 0;
                      }});
}

}  // namespace dsmoe::cli
