// HF checkpoint directories <-> Model, checked against the tensor registry.
// A directory holds config.json and model.safetensors (or shards + model.safetensors.index.json); F32, F16 and
// BF16 are read (converted to F32). Every registry tensor must be present with its exact shape, and every file
// tensor must be a registry tensor: missing, unexpected and mis-shaped tensors are errors naming the tensor.
#pragma once
#include <memory>
#include <string>

#include "io/safetensors.h"
#include "model/model.h"

namespace dsmoe {

// Read DIR/config.json and the weights beside it.
std::unique_ptr<Model> model_load(const std::string& dir);
// What every --model flag accepts: an HF directory or a GGUF file (llama.cpp's deepseek layout, dequantized to F32).
std::unique_ptr<Model> model_load_any(const std::string& path);
// Fill model's parameters from an opened archive (validated against the registry).
void model_load_weights(Model& model, const io::SafetensorsArchive& archive);
// Write DIR/config.json and the weights (HF names, one tensor per expert, {"format": "pt"} metadata).
void model_save(const Model& model, const std::string& dir, io::DType dtype = io::DType::F32,
                size_t max_shard_bytes = 5ull << 30);
io::DType save_dtype_from_name(const std::string& name);  // f32 | f16 | bf16

}  // namespace dsmoe
