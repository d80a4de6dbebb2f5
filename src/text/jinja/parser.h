// The chat-template parser: segments (lexer.h) -> the syntax tree (ast.h), by recursive descent with Jinja's
// operator precedence. Anything outside the supported subset (macros, includes, unknown filters/tests/functions/
// methods, ...) is a dsmoe::Error here, at parse time, naming the template line.
// Internal to src/text (the public API is text/chat_template.h).
#pragma once
#include <vector>

#include "text/jinja/ast.h"
#include "text/jinja/lexer.h"

namespace dsmoe::text::jinja {

Body parse(std::vector<Segment> segs);

}  // namespace dsmoe::text::jinja
