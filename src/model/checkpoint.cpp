#include "model/checkpoint.h"

#include <filesystem>
#include <set>

#include "core/error.h"
#include "io/gguf.h"
#include "model/gguf_model.h"

namespace dsmoe {

namespace fs = std::filesystem;

std::unique_ptr<Model> model_load(const std::string& dir) {
  check(fs::is_directory(dir), "model directory {} does not exist", dir);
  const std::string config_path = (fs::path(dir) / "config.json").string();
  check(fs::exists(config_path), "{} has no config.json", dir);
  auto model = std::make_unique<Model>(config_from_file(config_path));
  model_load_weights(*model, io::SafetensorsArchive::open(dir));
  return model;
}

std::unique_ptr<Model> model_load_any(const std::string& path) {
  if (io::is_gguf_path(path)) {
    check(fs::is_regular_file(path), "model file {} does not exist", path);
    return model_load_gguf(path);
  }
  return model_load(path);
}

void model_load_weights(Model& model, const io::SafetensorsArchive& archive) {
  std::set<std::string> used;
  auto load_one = [&](const std::string& name, const std::vector<int64_t>& shape, float* dst) {
    const io::TensorInfo* t = archive.find(name);
    check(t != nullptr, "{}: missing tensor {} (expected shape {})", archive.path(), name, shape_str(shape));
    check(t->shape == shape, "{}: tensor {} has shape {} but the config implies {}", archive.path(), name,
          shape_str(t->shape), shape_str(shape));
    archive.read_f32(*t, dst);
    used.insert(name);
  };
  for (const TensorSpec& spec : model.params.registry) {
    float* dst = model.params.ptr(spec);
    if (spec.n_stacked == 0) {
      load_one(spec.name, spec.shape, dst);
      continue;
    }
    const std::vector<int64_t> shape = spec.hf_shape();
    const int64_t slice = spec.numel() / spec.n_stacked;
    for (int64_t e = 0; e < spec.n_stacked; ++e) load_one(spec.hf_name(e), shape, dst + e * slice);
  }
  for (const io::TensorInfo& t : archive.tensors()) {
    if (used.count(t.name)) continue;
    // Tolerated extras written by other software: a tied model's duplicate lm_head, and the RoPE buffer that
    // old transformers versions saved. Neither carries information we do not already have.
    if (t.name == hf_tensor_name(TensorRole::lm_head) && model.config.tie_word_embeddings) continue;
    if (t.name.size() > 19 && t.name.ends_with("rotary_emb.inv_freq")) continue;
    fail("{}: unexpected tensor {} (shape {}) for this config", t.file, t.name, shape_str(t.shape));
  }
}

void model_save(const Model& model, const std::string& dir, io::DType dtype, size_t max_shard_bytes) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  check(!ec, "cannot create directory {}: {}", dir, ec.message());
  std::vector<io::TensorToWrite> tensors;
  for (const TensorSpec& spec : model.params.registry) {
    const float* src = model.params.ptr(spec);
    if (spec.n_stacked == 0) {
      tensors.push_back({spec.name, spec.shape, src});
      continue;
    }
    const int64_t slice = spec.numel() / spec.n_stacked;
    for (int64_t e = 0; e < spec.n_stacked; ++e) tensors.push_back({spec.hf_name(e), spec.hf_shape(), src + e * slice});
  }
  io::write_safetensors_dir(dir, tensors, dtype, max_shard_bytes);
  config_write_file(model.config, (fs::path(dir) / "config.json").string());
}

io::DType save_dtype_from_name(const std::string& name) {
  if (name == "f32" || name == "float32") return io::DType::F32;
  if (name == "f16" || name == "float16") return io::DType::F16;
  if (name == "bf16" || name == "bfloat16") return io::DType::BF16;
  fail("unknown save dtype '{}' (expected f32, f16 or bf16)", name);
}

}  // namespace dsmoe
