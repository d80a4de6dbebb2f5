#include "model_loading.h"

#include <filesystem>

#include "model/checkpoint.h"

namespace dsmoe::cli {
namespace fs = std::filesystem;

LoadedModel load_for_inference(const std::string& model_path, const std::string& tokenizer_dir,
                               const LoadOptions& options) {
  LoadedModel loaded;
  loaded.model = model_load_any(model_path);
  const std::string dir = !tokenizer_dir.empty()                                ? tokenizer_dir
                          : fs::exists(fs::path(model_path) / "tokenizer.json") ? model_path
                                                                                : "";
  if (!dir.empty()) loaded.tokenizer.emplace(text::Tokenizer::load(dir));
  return loaded;
}

}  // namespace dsmoe::cli
