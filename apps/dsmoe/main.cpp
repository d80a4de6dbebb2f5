// dsmoe — command-line front end: parses the command line, runs one subcommand, and turns every error into one
// "error: ..." line with a non-zero exit status.
#include <new>
#include <vector>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include "commands.h"
#include "core/error.h"
#include "core/threads.h"
#include "parallel.h"

int main(int argc, char** argv) {
  CLI::App app{"dsmoe: a C++ engine for DeepSeekMoE models (training, evaluation, generation, text tools)"};
  app.require_subcommand(1);
  int threads = 0;
  app.add_option("--threads,-t", threads, "threads (default: all cores)")->check(CLI::NonNegativeNumber);
  std::vector<dsmoe::cli::Command> commands;
  dsmoe::cli::add_model_commands(app, commands);
  dsmoe::cli::add_train_commands(app, commands);
  dsmoe::cli::add_text_commands(app, commands);
  dsmoe::cli::add_chat_commands(app, commands);
  dsmoe::cli::add_serve_commands(app, commands);
  dsmoe::cli::add_report_commands(app, commands);
  dsmoe::cli::add_infer_commands(app, commands);
  dsmoe::cli::add_flops_commands(app, commands);
  dsmoe::cli::add_paper_commands(app, commands);
  try {
    dsmoe::cli::parallel_init(&argc, &argv);
  } catch (const std::exception& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    dsmoe::set_num_threads(threads);
    for (const dsmoe::cli::Command& command : commands)
      if (command.app->parsed()) {
        const std::string name = command.app->get_name();
        const bool across_ranks =
            command.app->get_parent() == &app && (name == "train" || name == "sft" || name == "demo");
        if (!across_ranks) dsmoe::cli::require_single_process(name);
        return command.run();
      }
  } catch (const dsmoe::Error& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    fmt::print(stderr, "error: out of memory\n");
    return 1;
  } catch (const std::exception& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  }
  return 0;
}
