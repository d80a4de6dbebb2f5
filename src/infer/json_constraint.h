// Constrained sampling for JSON output: OpenAI's response_format {"type": "json_object"} and {"type":
// "json_schema", ...}. A byte-level matcher holds the position in a JSON value as a stack of frames; before each
// token is sampled, every token whose bytes the matcher would reject gets probability 0, so every reply parses
// (and, with a schema, validates) once the value is complete, and the reply ends there.
//
// Supported schema keywords: type (object, array, string, number, integer, boolean, null, or a list of them),
// properties, required, items, enum. Objects write their properties in the schema's order (required ones
// always, optional ones may be left out) and no others. Output is compact: no whitespace between tokens.
// Bounds keep every reply finite: strings of at most 256 bytes (valid UTF-8), arrays of at most 64 items, numbers
// of at most 16 digits per part (2 in the exponent, so that every number fits a double), nesting of at most 32
// levels; past a bound only the closing character is allowed. Special tokens are never sampled inside a value.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace dsmoe {

struct JsonSchemaNode;

class JsonConstraint {
 public:
  // Any JSON object ({"type": "json_object"}).
  static JsonConstraint any_object();
  // A JSON Schema (the "schema" member of response_format.json_schema). Throws dsmoe::Error on a schema it cannot
  // enforce (naming the keyword), never ignores one silently.
  // Properties are written in the order the schema lists them (an ordered_json keeps the client's order).
  static JsonConstraint from_schema(const nlohmann::ordered_json& schema);

  // Feeds bytes; false (and the state unchanged) if they cannot continue a valid value.
  bool advance(const std::string& bytes);
  // Would these bytes be accepted? (A copy advances; the state is unchanged.)
  bool accepts(const std::string& bytes) const;
  // The reply may end here (the value is whole; a top-level number could still go on).
  bool complete() const;
  // Nothing more may follow.
  bool closed() const { return done_; }
  // The fewest bytes that complete the value from here (closing what is open, writing the required properties).
  int bytes_to_close() const;
  // bytes_to_close() after these bytes; -1 if they are rejected.
  int bytes_to_close_after(const std::string& bytes) const;

  JsonConstraint(const JsonConstraint& other);
  JsonConstraint& operator=(const JsonConstraint& other);
  JsonConstraint(JsonConstraint&&) noexcept;
  JsonConstraint& operator=(JsonConstraint&&) noexcept;
  ~JsonConstraint();

  struct Frame;

 private:
  JsonConstraint();
  std::shared_ptr<const std::vector<std::unique_ptr<JsonSchemaNode>>> nodes_;  // owns the schema tree
  std::vector<Frame> stack_;
  bool done_ = false;
};

}  // namespace dsmoe
