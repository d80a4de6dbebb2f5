// The dsmoe CLI is a set of subcommands, each registered by the cmd_*.cpp file of its concern. Registration
// declares the flags; the Command's run function executes after parsing. Errors are dsmoe::Error exceptions,
// turned into one "error:" line and exit status 1 by main().
#pragma once
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

namespace dsmoe {
struct SamplingParams;
struct GenerationTimings;
}  // namespace dsmoe

namespace dsmoe::cli {

struct Command {
  CLI::App* app;             // the subcommand
  std::function<int()> run;  // what it does once its flags are parsed
};

// A whole file as bytes; "cannot open PATH" when it cannot be read.
std::string read_file(const std::string& path);
// Seconds since t0 (timing lines).
double seconds_since(std::chrono::steady_clock::time_point t0);

// llama.cpp-style "prompt eval time" and "eval time" lines (stderr).
void print_timings(const GenerationTimings& t);

// "1,2,3" or "1 2 3" -> ids; a non-number or a negative value is an error naming it.
std::vector<int32_t> parse_ids(const std::string& text);

// The sampling flags of generate and chat (--temperature --top-k --top-p --min-p --repeat-penalty
// --presence-penalty --frequency-penalty --repeat-last-n --seed), bound to sp; --help shows sp's values as defaults.
void add_sampling_options(CLI::App& cmd, SamplingParams& sp);

// One registration function per cmd_*.cpp file; the comment lists the subcommands it adds, in --help order.
void add_model_commands(CLI::App& app, std::vector<Command>& commands);   // init eval generate info
void add_train_commands(CLI::App& app, std::vector<Command>& commands);   // train sft demo ep-plan
void add_text_commands(CLI::App& app, std::vector<Command>& commands);    // tokenizer (train) data (prepare synth)
                                                                          // tokenize detokenize chat-template
void add_chat_commands(CLI::App& app, std::vector<Command>& commands);    // chat
void add_serve_commands(CLI::App& app, std::vector<Command>& commands);   // serve
void add_report_commands(CLI::App& app, std::vector<Command>& commands);  // plot
void add_infer_commands(CLI::App& app, std::vector<Command>& commands);   // bench quantize synth perplexity
void add_flops_commands(CLI::App& app, std::vector<Command>& commands);   // flops
void add_paper_commands(CLI::App& app, std::vector<Command>& commands);   // ablate analyze

}  // namespace dsmoe::cli
