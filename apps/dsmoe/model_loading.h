// How CLI commands that run a model (generate, chat, bench, perplexity) find its weights and its tokenizer:
// --model is an HF directory (config.json + safetensors, sharded or not) or a GGUF file; the tokenizer is
// --tokenizer DIR when given, else the model directory's tokenizer.json, else the GGUF file's tokenizer metadata.
#pragma once
#include <memory>
#include <optional>
#include <string>

#include "infer/infer_model.h"
#include "text/tokenizer.h"

namespace dsmoe::cli {

struct LoadOptions {
  bool use_mmap = true;   // --no-mmap reads the weights into memory instead
  bool verbose = true;    // print the memory the model needs before loading (stderr)
  bool tokenizer = true;  // look for a tokenizer (bench needs none)
  bool pack = true;       // Q8_0/Q4_0 matrices in the packed layout (infer_model.h)
};

struct LoadedModel {
  std::unique_ptr<InferModel> model;
  std::optional<text::Tokenizer> tokenizer;  // empty when none was found
};

// Checks that the weights fit in this machine's memory and address-space limit (one error line with both
// figures if not), prints what
// they need, loads them, and loads a tokenizer when one is available (tokenizer_dir non-empty makes it required).
// A model config from a preset name (e.g. deepseek-moe-16b-base), a model directory or a config.json.
ModelConfig config_from_arg(const std::string& path);

LoadedModel load_for_inference(const std::string& model_path, const std::string& tokenizer_dir,
                               const LoadOptions& options = {});

}  // namespace dsmoe::cli
