// The paper's expert-specialisation analyses (reference §3.5, paper §4.5) on trained models, through the model's
// evaluation-time routing options (model/routing.h RoutingOptions):
//   shared    disable the shared experts and activate as many more routed experts (compute unchanged);
//             the paper's 2B DeepSeekMoE goes 1.808 -> 2.414
//   mask      mask each token's top r·E routed experts by gate probability, r in {0, 1/16, .., 4/16}, and route
//             top-K among the rest; DeepSeekMoE's loss rises more steeply than GShard's (less redundancy)
//   topk      loss with K = 1 .. N_active routed experts at inference (paper Fig. 5)
//   domains   per-domain expert-usage shares, their entropy and the domain/expert mutual information, for text
//             with domain tags (JSONL with a "domain" field, or the synthetic corpus with its sidecar)
// Each analysis writes a table (report.md, analysis.json) and a PNG (plots/).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace dsmoe::paper {

struct AnalysisOptions {
  std::vector<std::string> models;  // model directories (HF layout, e.g. a run's latest checkpoint)
  std::vector<std::string> names;   // a label per model (default: derived from the path)
  std::string data;                 // token file (.bin), or text/JSONL files (comma-separated) for the losses
  std::string domains;              // JSONL with "text" + "domain", or a synthetic corpus (sidecar FILE.json)
  std::string tokenizer;            // for text data and domains (default: the first model's directory)
  int64_t seq_len = 128;            // evaluation window
  int64_t batch = 8;
  int64_t max_tokens = 262144;  // tokens evaluated per loss (and per domain)
  std::string out_dir;
  std::string command_line;
};

struct AnalysisResult {
  nlohmann::json json;  // analysis.json
  std::string report_path;
};

AnalysisResult run_analysis(const AnalysisOptions& options);

}  // namespace dsmoe::paper
