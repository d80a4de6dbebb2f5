// The built-in synthetic corpus: the default training text of the demo and of the tests, so nothing needs a
// download. Documents come from a few clearly different domains (arithmetic, prose, code, records, dialogue), each
// with its own vocabulary and layout, and every document is tagged with its domain: training tools can then show
// which experts each domain routes to (the paper's expert-specialisation claim).
//
// Everything is deterministic across platforms: the generator uses its own splitmix64 stream and integer
// arithmetic only (no std:: distributions, whose algorithms are implementation-defined).
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace dsmoe::text {

struct SynthDoc {
  std::string domain;
  std::string text;  // never empty, never contains "\n\n", never starts or ends with '\n'
};

struct SynthStats {
  int64_t bytes = 0, documents = 0;
  std::map<std::string, int64_t> docs_per_domain, bytes_per_domain;  // bytes of document text, separators excluded
};

// The domain names, in the order the generator indexes them.
const std::vector<std::string>& synth_domains();

// A deterministic stream of documents: the same seed gives the same documents on every platform. Domains are
// drawn uniformly at random.
class SynthGenerator {
 public:
  explicit SynthGenerator(uint64_t seed);
  SynthDoc next();

 private:
  uint64_t state_;  // splitmix64 state
};

// Writes documents joined by a blank line ("\n\n"; no trailing separator) until the file holds >= `bytes` bytes,
// to `path` and a sidecar `path + ".json"`:
//   {"seed", "bytes", "documents", "domains": {name: {"documents", "bytes"}}, "docs": [{"offset", "length", "domain"}]}
// Both files are written to `.tmp` names and renamed, so no half-written corpus survives an error.
// Throws dsmoe::Error for bytes <= 0 or an unwritable path.
SynthStats write_synth_corpus(const std::string& path, int64_t bytes, uint64_t seed);

}  // namespace dsmoe::text
