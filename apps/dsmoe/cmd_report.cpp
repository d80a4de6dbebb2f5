// Report commands of the dsmoe CLI: plot.
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include "commands.h"
#include "report/plot.h"

namespace dsmoe::cli {

void add_report_commands(CLI::App& app, std::vector<Command>& commands) {
  auto run_dir = std::make_shared<std::string>();
  CLI::App* plot = app.add_subcommand("plot", "draw RUN/metrics.jsonl as PNG figures in RUN/plots/ (needs gnuplot)");
  plot->add_option("RUN", *run_dir, "run directory (holds metrics.jsonl)")->required();
  commands.push_back({plot, [run_dir] {
                        const report::PlotResult r = report::plot_run(*run_dir);
                        for (const std::string& f : r.files) fmt::print("wrote {}\n", f);
                        for (const std::string& n : r.notes) fmt::print("note: {}\n", n);
                        return 0;
                      }});
}

}  // namespace dsmoe::cli
