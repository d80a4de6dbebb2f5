#include "model_loading.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>

#include <filesystem>

#include <fmt/core.h>

#include "core/error.h"
#include "io/gguf.h"
#include "text/gguf_vocab.h"
#include "train/run_config.h"

namespace dsmoe::cli {
namespace fs = std::filesystem;

namespace {
double gib(size_t bytes) { return static_cast<double>(bytes) / (1ull << 30); }

// Physical memory, or less when an address-space limit (ulimit -v) forbids mapping more.
size_t usable_memory() {
  size_t bytes = static_cast<size_t>(sysconf(_SC_PHYS_PAGES)) * static_cast<size_t>(sysconf(_SC_PAGE_SIZE));
  struct rlimit limit {};
  if (getrlimit(RLIMIT_AS, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY)
    bytes = std::min<size_t>(bytes, static_cast<size_t>(limit.rlim_cur));
  return bytes;
}
}  // namespace

LoadedModel load_for_inference(const std::string& model_path, const std::string& tokenizer_dir,
                               const LoadOptions& options) {
  const bool gguf = io::is_gguf_path(model_path);
  const size_t need = infer_model_bytes_needed(model_path);
  const size_t have = usable_memory();
  // With mmap the kernel could page weights in and out, but every decoded token reads most of them: a model
  // larger than RAM would run at disk speed. Refuse it plainly instead.
  check(need <= have, "{}: the weights need {:.2f} GiB but only {:.2f} GiB of memory is usable here", model_path,
        gib(need), gib(have));
  if (options.verbose)
    fmt::print(stderr, "loading {}: {:.2f} GiB of weights ({}; {:.2f} GiB of memory)\n", model_path, gib(need),
               gguf ? (options.use_mmap ? "GGUF, mmap" : "GGUF, read into memory") : "safetensors -> F32", gib(have));
  LoadedModel loaded;
  InferLoadOptions infer_options;
  infer_options.use_mmap = options.use_mmap;
  infer_options.pack = options.pack;
  loaded.model = infer_model_load(model_path, infer_options);
  if (!options.tokenizer) {
    // none wanted
  } else if (!tokenizer_dir.empty()) {
    loaded.tokenizer.emplace(text::Tokenizer::load(tokenizer_dir));
  } else if (!gguf && fs::exists(fs::path(model_path) / "tokenizer.json")) {
    loaded.tokenizer.emplace(text::Tokenizer::load(model_path));
  } else if (gguf) {
    const io::GgufFile file = io::GgufFile::open(model_path);
    if (text::gguf_has_tokenizer(file)) loaded.tokenizer.emplace(text::tokenizer_from_gguf(file));
  }
  return loaded;
}

ModelConfig config_from_arg(const std::string& path) {
  namespace fs = std::filesystem;
  if (!fs::exists(path) && model_preset_exists(path)) {
    nlohmann::json j = model_preset_config(path);
    j.erase("vocab_from_tokenizer");
    return config_from_json(j, "preset " + path);
  }
  return config_from_file(fs::is_directory(path) ? (fs::path(path) / "config.json").string() : path);
}

}  // namespace dsmoe::cli
