// dsmoe chat: placeholder registration, filled in by the chat REPL work.
#include "commands.h"
namespace dsmoe::cli {
void add_chat_commands(CLI::App&, std::vector<Command>&) {}
}  // namespace dsmoe::cli
