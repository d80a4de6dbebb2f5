// Corpus preparation: text files, directories and JSONL -> documents -> token files for training and evaluation.
//
// Documents: in plain text, maximal runs of non-blank lines (lines joined with "\n"; the blank lines that separate
// documents belong to none); in JSONL (files ending .jsonl), the "text" field of each line. Directories are walked
// recursively in sorted order. Each document becomes [BOS if the tokenizer config adds one] + its tokens + [EOS].
// Every ceil(1/val_fraction)-th document (evenly spaced, deterministic) goes to the validation file.
// Output: PREFIX.train.bin and PREFIX.val.bin (flat little-endian uint32) and PREFIX.json (sidecar).
// Memory stays bounded: documents are read, tokenized (in parallel) and written in batches.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "text/tokenizer.h"

namespace dsmoe::text {

struct PrepareOptions {
  std::vector<std::string> inputs;  // files or directories
  std::string out_prefix;
  double val_fraction = 0.005;
  bool progress = true;  // live bar on a terminal, plain lines otherwise
};

struct PrepareStats {
  int64_t bytes = 0;  // input text bytes in documents
  int64_t documents = 0, train_documents = 0, val_documents = 0;
  int64_t train_tokens = 0, val_tokens = 0;
  double seconds = 0;
};

PrepareStats prepare_corpus(const Tokenizer& tokenizer, const PrepareOptions& options);

// Calls fn(document) for every document of the inputs, in order (the reader prepare_corpus uses).
void for_each_document(const std::vector<std::string>& inputs, const std::function<void(std::string&&)>& fn);
// The input files behind `inputs` (directories expanded, sorted). Errors for paths that do not exist.
std::vector<std::string> expand_inputs(const std::vector<std::string>& inputs);
// Whether an input file is JSON Lines (one {"text": ...} document per line) rather than plain text: by its
// extension, .jsonl. The BPE trainer and corpus preparation read inputs by this one rule.
bool is_jsonl_path(const std::string& path);

}  // namespace dsmoe::text
